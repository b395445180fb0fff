"""`Conversation`: a chat whose turns reuse what the caches hold."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Union

from .llama import Llama


class Conversation:
    """Messages kept across turns. Each turn sends the whole conversation
    through the chat template; the model's caches still hold the earlier
    turns, so only the new text is read (``result["speculation"]
    ["prompt_tokens_cached"]`` says how much was not).

    Args:
        llama: the model to talk to.
        system: an optional system message.
    """

    def __init__(self, llama: Llama, system: Optional[str] = None) -> None:
        self.llama = llama
        self.messages: List[Dict[str, str]] = []
        if system is not None:
            self.messages.append({"role": "system", "content": system})
        self.last: Optional[Dict[str, Any]] = None

    def send(self, content: str, stream: bool = False, **kwargs: Any) -> Union[str, Iterator[str]]:
        """Adds a user message and returns the answer (kept in the
        conversation); with ``stream=True``, an iterator of its pieces.
        Keyword arguments go to ``Llama.create_chat_completion``."""
        self.messages.append({"role": "user", "content": content})
        if stream:
            return self._stream(**kwargs)
        self.last = self.llama.create_chat_completion(self.messages, **kwargs)
        answer = self.last["choices"][0]["message"]["content"]
        self.messages.append({"role": "assistant", "content": answer})
        return answer

    def _stream(self, **kwargs: Any) -> Iterator[str]:
        parts: List[str] = []
        try:
            for chunk in self.llama.create_chat_completion(self.messages, stream=True, **kwargs):
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    parts.append(text)
                    yield text
                if chunk["choices"][0]["finish_reason"] is not None:
                    self.last = chunk
        finally:
            self.messages.append({"role": "assistant", "content": "".join(parts)})
