"""`Llama`: a GGUF model with speculative decoding, shaped like
llama-cpp-python's class of the same name.

Completions and chat completions return the dicts (and, with
``stream=True``, the chunks) llama-cpp-python returns, with one key more,
``"speculation"``, that says what drafting did. Generation runs in the
native module without the GIL; Ctrl-C stops it and leaves the model ready.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from . import _edgespec

# llama-cpp-python's "use a random seed" value.
LLAMA_DEFAULT_SEED = 0xFFFFFFFF

_FINISH = {
    "eos": "stop",
    "stop": "stop",
    "grammar": "stop",
    "length": "length",
    "context": "length",
    "interrupted": "stop",
}


def _json_grammar() -> str:
    """A GBNF grammar for any JSON object (response_format without a schema)."""
    return r"""
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws     ::= | " " | "\n" [ \t]{0,20}
"""


class Llama:
    """A target model (and its drafter) ready to generate.

    Args:
        model_path: the target's GGUF file.
        draft_model_path: a smaller model of the same vocabulary to draft
            with (the 0.5B beside a 1.5B target, say).
        draft: how to draft: ``"auto"`` (hybrid with a drafter model, else
            lookup), ``"lookup"`` (copies from the prompt and earlier
            text, no model), ``"model"``, ``"hybrid"``, ``"trimmed"`` or
            ``"none"``. Greedy output is the target's whatever the choice.
        n_ctx: the context window in tokens.
        n_threads: CPU threads (None: the runtime's default).
        n_gpu_layers: layers on a GPU (-1: all), in a GPU build.
        seed: the sampling seed (LLAMA_DEFAULT_SEED: a random one).
        gamma: a fixed draft length (None: the cost-aware policy).
        exact: exact mode (greedy output byte-identical to the target
            alone's; docs/lossless.md).
        target_rpc, rpc_key_file, target_fallback: the target on
            ``edgespec rpc-server`` machines (docs/remote-target.md).
        verbose: accepted for llama-cpp-python compatibility.
    """

    def __init__(
        self,
        model_path: str,
        *,
        draft_model_path: Optional[str] = None,
        draft: str = "auto",
        n_ctx: int = 4096,
        n_threads: Optional[int] = None,
        n_gpu_layers: int = 0,
        seed: int = LLAMA_DEFAULT_SEED,
        gamma: Optional[int] = None,
        exact: bool = False,
        repack: bool = True,
        target_rpc: Optional[str] = None,
        rpc_key_file: Optional[str] = None,
        target_fallback: Optional[str] = None,
        insecure_rpc: bool = False,
        verbose: bool = False,
        **_ignored: Any,
    ) -> None:
        self.model_path = str(model_path)
        self._engine = _edgespec.Engine(
            self.model_path,
            draft_model_path=None if draft_model_path is None else str(draft_model_path),
            draft=draft,
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_gpu_layers=n_gpu_layers,
            gamma=gamma,
            exact=exact,
            repack=repack,
            target_rpc=target_rpc,
            rpc_key_file=rpc_key_file,
            target_fallback=target_fallback,
            insecure_rpc=insecure_rpc,
        )
        self._seed = seed
        self.verbose = verbose

    # --- tokens -----------------------------------------------------------

    def n_ctx(self) -> int:
        """The context window in tokens."""
        return self._engine.n_ctx

    def n_vocab(self) -> int:
        """The vocabulary's size."""
        return self._engine.n_vocab

    @property
    def draft_kind(self) -> str:
        """How this model drafts."""
        return self._engine.draft_kind

    def tokenize(self, text: Union[bytes, str], add_bos: bool = True, special: bool = False) -> List[int]:
        """Token ids of ``text`` (bytes, as llama-cpp-python takes, or str)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return self._engine.tokenize(text, add_bos, special)

    def detokenize(
        self, tokens: Sequence[int], prev_tokens: Optional[Sequence[int]] = None, special: bool = False
    ) -> bytes:
        """The bytes of ``tokens``."""
        return self._engine.detokenize(list(tokens), special)

    # --- caches -----------------------------------------------------------

    def save_prompt_cache(self, path: str) -> int:
        """Saves what the caches hold (tokens); load it with the same models."""
        return self._engine.save_prompt_cache(str(path))

    def load_prompt_cache(self, path: str) -> int:
        """Restores a saved prompt cache; returns the tokens it holds."""
        return self._engine.load_prompt_cache(str(path))

    def save_lookup_memory(self, path: str) -> None:
        """Saves the lookup drafter's memory of earlier outputs."""
        self._engine.save_lookup_memory(str(path))

    def load_lookup_memory(self, path: str) -> None:
        """Loads a lookup memory saved with the same target."""
        self._engine.load_lookup_memory(str(path))

    def reset(self) -> None:
        """Empties the caches."""
        self._engine.reset()

    # --- generation ---------------------------------------------------------

    def _seed_for(self, seed: Optional[int]) -> int:
        seed = self._seed if seed is None else seed
        if seed == LLAMA_DEFAULT_SEED or seed < 0:
            seed = uuid.uuid4().int & 0xFFFFFFFFFFFFFFFF
        return seed

    def _stream(
        self,
        prompt: List[int],
        *,
        max_tokens: Optional[int],
        temperature: float,
        top_p: float,
        top_k: int,
        min_p: float,
        repeat_penalty: float,
        frequency_penalty: float,
        presence_penalty: float,
        stop: Union[None, str, List[str]],
        seed: Optional[int],
        grammar: Optional[str],
    ):
        if max_tokens is None or max_tokens <= 0:
            max_tokens = max(self.n_ctx() - len(prompt), 1)
        if isinstance(stop, str):
            stop = [stop]
        return self._engine.generate(
            prompt,
            max_tokens,
            temperature=float(temperature),
            top_k=int(top_k),
            top_p=float(top_p),
            min_p=float(min_p),
            repeat_penalty=float(repeat_penalty),
            frequency_penalty=float(frequency_penalty),
            presence_penalty=float(presence_penalty),
            seed=self._seed_for(seed),
            stop=list(stop or []),
            grammar=grammar,
        )

    @staticmethod
    def _grammar(grammar: Any, response_format: Optional[Dict[str, Any]]) -> Optional[str]:
        if grammar is not None:
            # A GBNF string, or llama-cpp-python's LlamaGrammar (its text).
            return grammar if isinstance(grammar, str) else getattr(grammar, "_grammar", str(grammar))
        if response_format and response_format.get("type") == "json_object":
            schema = response_format.get("schema")
            if schema is None:
                return _json_grammar()
            import json

            return _edgespec.json_schema_to_grammar(schema if isinstance(schema, str) else json.dumps(schema))
        return None

    def create_completion(
        self,
        prompt: Union[str, List[int]],
        suffix: Optional[str] = None,
        max_tokens: Optional[int] = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        logprobs: Optional[int] = None,
        echo: bool = False,
        stop: Union[None, str, List[str]] = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        top_k: int = 40,
        stream: bool = False,
        seed: Optional[int] = None,
        model: Optional[str] = None,
        grammar: Any = None,
        **_ignored: Any,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """Completes ``prompt`` (text, or token ids): a ``text_completion``
        dict, or with ``stream=True`` an iterator of its chunks. ``logprobs``
        and ``suffix`` (fill-in-the-middle) are not supported: asking for
        them raises ``InvalidArgument`` rather than quietly ignoring them."""
        if logprobs is not None or suffix is not None:
            raise _edgespec.InvalidArgument("logprobs and suffix are not supported by edgespec")
        tokens = prompt if isinstance(prompt, list) else self.tokenize(prompt, add_bos=True, special=True)
        echoed = ""
        if echo:
            echoed = prompt if isinstance(prompt, str) else self.detokenize(prompt).decode("utf-8", "replace")
        pieces = self._stream(
            tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            stop=stop,
            seed=seed,
            grammar=self._grammar(grammar, None),
        )
        ident = f"cmpl-{uuid.uuid4()}"
        created = int(time.time())
        name = model or self.model_path
        if stream:
            return self._completion_chunks(pieces, ident, created, name, echoed)
        text = "".join(piece for _, piece in pieces)
        result = pieces.result()
        return {
            "id": ident,
            "object": "text_completion",
            "created": created,
            "model": name,
            "choices": [
                {
                    "text": echoed + text,
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": _FINISH[result["stop"]],
                }
            ],
            "usage": _usage(result),
            "speculation": _speculation(result),
        }

    __call__ = create_completion

    @staticmethod
    def _completion_chunks(pieces, ident: str, created: int, name: str, echo: str) -> Iterator[Dict[str, Any]]:
        def chunk(text: str, finish: Optional[str]) -> Dict[str, Any]:
            return {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": name,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
            }

        try:
            if echo:
                yield chunk(echo, None)
            for _, text in pieces:
                if text:
                    yield chunk(text, None)
            result = pieces.result()
            last = chunk("", _FINISH[result["stop"]])
            last["usage"] = _usage(result)
            last["speculation"] = _speculation(result)
            yield last
        finally:
            pieces.close()

    def create_chat_completion(
        self,
        messages: List[Dict[str, Any]],
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        stream: bool = False,
        stop: Union[None, str, List[str]] = None,
        seed: Optional[int] = None,
        response_format: Optional[Dict[str, Any]] = None,
        max_tokens: Optional[int] = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        model: Optional[str] = None,
        grammar: Any = None,
        **_ignored: Any,
    ) -> Union[Dict[str, Any], Iterator[Dict[str, Any]]]:
        """Answers ``messages`` (``{"role": ..., "content": ...}`` dicts)
        through the model's chat template: a ``chat.completion`` dict, or
        with ``stream=True`` an iterator of ``chat.completion.chunk``s. The
        caches keep what they hold in common with the next call's messages,
        so a conversation reads only its new turns."""
        pairs = [(m["role"], _content(m.get("content"))) for m in messages]
        tokens = self.tokenize(self._engine.chat_prompt(pairs), add_bos=True, special=True)
        pieces = self._stream(
            tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            stop=stop,
            seed=seed,
            grammar=self._grammar(grammar, response_format),
        )
        ident = f"chatcmpl-{uuid.uuid4()}"
        created = int(time.time())
        name = model or self.model_path
        if stream:
            return self._chat_chunks(pieces, ident, created, name)
        text = "".join(piece for _, piece in pieces)
        result = pieces.result()
        return {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": _FINISH[result["stop"]],
                }
            ],
            "usage": _usage(result),
            "speculation": _speculation(result),
        }

    @staticmethod
    def _chat_chunks(pieces, ident: str, created: int, name: str) -> Iterator[Dict[str, Any]]:
        def chunk(delta: Dict[str, Any], finish: Optional[str]) -> Dict[str, Any]:
            return {
                "id": ident,
                "model": name,
                "created": created,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        try:
            yield chunk({"role": "assistant"}, None)
            for _, text in pieces:
                if text:
                    yield chunk({"content": text}, None)
            result = pieces.result()
            last = chunk({}, _FINISH[result["stop"]])
            last["usage"] = _usage(result)
            last["speculation"] = _speculation(result)
            yield last
        finally:
            pieces.close()


def _content(content: Any) -> str:
    """A message's content: text, or OpenAI's list of parts (text ones kept)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _usage(result: Dict[str, Any]) -> Dict[str, int]:
    prompt, completion = result["prompt_tokens"], result["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _speculation(result: Dict[str, Any]) -> Dict[str, Any]:
    """What drafting did, and the timings (the ``"speculation"`` key)."""
    spec = dict(result.get("speculation") or {})
    spec.update(
        prompt_tokens_cached=result["prompt_tokens_cached"],
        prompt_s=result["prompt_s"],
        decode_s=result["decode_s"],
        ttft_s=result["ttft_s"],
        decode_tok_s=result["decode_tok_s"],
        round_trips=result["round_trips"],
        remote_bytes=result["remote_bytes"],
    )
    return spec
