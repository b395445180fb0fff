"""edgespec: speculative decoding on small machines, from Python.

GGUF models run through llama.cpp in the edgespec runtime; ``Llama`` is
shaped like llama-cpp-python's, with drafting (lookup copies, a drafter
model, both) that keeps greedy output the target's::

    from edgespec import Llama
    llm = Llama("target.gguf", draft_model_path="drafter.gguf")
    for chunk in llm.create_chat_completion(
        [{"role": "user", "content": "Write a haiku about boards."}], stream=True
    ):
        print(chunk["choices"][0]["delta"].get("content", ""), end="", flush=True)

Errors are ``EdgespecError`` subclasses: ``ModelError``, ``InvalidArgument``,
``ContextFullError``, ``RemoteError``, ``GenerationError``.
"""

from ._edgespec import (
    ContextFullError,
    EdgespecError,
    GenerationError,
    InvalidArgument,
    ModelError,
    RemoteError,
    __version__,
    json_schema_to_grammar,
)
from .conversation import Conversation
from .llama import LLAMA_DEFAULT_SEED, Llama

__all__ = [
    "Llama",
    "Conversation",
    "LLAMA_DEFAULT_SEED",
    "EdgespecError",
    "ModelError",
    "InvalidArgument",
    "ContextFullError",
    "RemoteError",
    "GenerationError",
    "json_schema_to_grammar",
    "__version__",
]
