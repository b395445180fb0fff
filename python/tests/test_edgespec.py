"""The Python package against the CLI and the C API, on SmolLM2 (fetched
by models/fetch.py; without it every test here skips, saying why).

Run from the repository root after ``pip install .``:
``python -m pytest python/tests``.
"""

import _thread
import signal
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

import edgespec
from edgespec import Llama

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CLI = ROOT / "target" / "release" / "edgespec"
PROMPT = "List the days of the week, then list them again in the same order:"
KINDS = ["none", "lookup", "model", "hybrid"]

needs_model = pytest.mark.skipif(
    not SMOLLM2.is_file(), reason=f"{SMOLLM2} is missing: run python3 models/fetch.py"
)
needs_cli = pytest.mark.skipif(
    not CLI.is_file(), reason=f"{CLI} is missing: run cargo build --release"
)


def llama(kind="auto", exact=True, **kwargs):
    """SmolLM2 drafting with `kind`; in exact mode, so comparing texts
    across runs, threads and processes compares the target's choices, not
    the batches the policy happened to choose (docs/lossless.md)."""
    drafter = str(SMOLLM2) if kind in ("model", "hybrid") else None
    return Llama(
        str(SMOLLM2), draft=kind, draft_model_path=drafter, n_ctx=1024, n_threads=1, exact=exact, **kwargs
    )


def cli_generate(kind, n):
    # Exact mode on both sides: a drafter's timing-driven batches cannot
    # flip a near-tie (docs/lossless.md).
    args = [str(CLI), "generate", "-m", str(SMOLLM2), "-p", PROMPT, "-n", str(n), "-t", "1", "-c", "1024", "--exact"]
    args += ["--target-only"] if kind == "none" else ["--draft-kind", kind]
    if kind in ("model", "hybrid"):
        args += ["-md", str(SMOLLM2)]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    assert out.stdout.endswith("\n")
    return out.stdout[:-1]


@needs_model
@needs_cli
@pytest.mark.parametrize("kind", KINDS)
def test_greedy_text_equals_the_cli_for_every_draft_kind(kind):
    expected = cli_generate(kind, 40)
    assert len(expected.strip()) > 20
    llm = llama(kind)
    assert llm.draft_kind == kind
    result = llm.create_completion(PROMPT, max_tokens=40, temperature=0)
    assert result["choices"][0]["text"] == expected
    # Streamed, the chunks concatenate to the same text.
    chunks = list(llm.create_completion(PROMPT, max_tokens=40, temperature=0, stream=True))
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")
    if kind != "none":
        spec = result["speculation"]
        assert spec["target_calls"] > 0 and spec["accepted"] <= spec["drafted"]


@needs_model
@pytest.mark.parametrize("kind", ["lookup", "hybrid"])
def test_greedy_text_equals_the_c_apis(kind):
    cc = shutil.which("cc")
    lib = ROOT / "target" / "release" / "libedgespec.a"
    if cc is None or not lib.is_file():
        pytest.skip("no C compiler or no target/release/libedgespec.a (cargo build --release -p edgespec-capi)")
    exe = ROOT / "target" / "python-c-generate"
    subprocess.run(
        [cc, "-std=c11", "-O1", "-I", str(ROOT / "include"), str(ROOT / "examples/c/generate.c"), str(lib),
         "-lstdc++", "-lgomp", "-lm", "-lpthread", "-ldl", "-o", str(exe)],
        check=True,
    )
    drafter = str(SMOLLM2) if kind == "hybrid" else ""
    out = subprocess.run([str(exe), str(SMOLLM2), PROMPT, drafter, "40"], capture_output=True, text=True, check=True)
    # generate.c: lookup drafts (hybrid with a drafter), γ 4 (fixed: the
    # same batches every run), the chat template, 2 threads.
    llm = Llama(
        str(SMOLLM2), draft=kind, draft_model_path=drafter or None, n_ctx=2048, n_threads=2, gamma=4
    )
    answer = llm.create_chat_completion([{"role": "user", "content": PROMPT}], temperature=0, max_tokens=40)
    assert answer["choices"][0]["message"]["content"] + "\n" == out.stdout


@needs_model
def test_results_have_llama_cpp_pythons_shapes():
    llm = llama("lookup")
    completion = llm(PROMPT, max_tokens=8, temperature=0)
    assert set(completion) >= {"id", "object", "created", "model", "choices", "usage"}
    assert completion["object"] == "text_completion" and completion["id"].startswith("cmpl-")
    choice = completion["choices"][0]
    assert set(choice) == {"text", "index", "logprobs", "finish_reason"}
    assert choice["index"] == 0 and choice["logprobs"] is None and choice["finish_reason"] == "length"
    usage = completion["usage"]
    assert usage["completion_tokens"] == 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    chat = llm.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0)
    assert chat["object"] == "chat.completion" and chat["id"].startswith("chatcmpl-")
    choice = chat["choices"][0]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason"}
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert set(chat["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}

    chunks = list(
        llm.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0, stream=True)
    )
    for c in chunks:
        assert c["object"] == "chat.completion.chunk"
        assert set(c["choices"][0]) == {"index", "delta", "logprobs", "finish_reason"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == choice["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]


@needs_model
def test_sampling_is_seeded_and_a_grammar_holds():
    llm = llama("lookup")
    a = llm(PROMPT, max_tokens=24, temperature=0.9, top_k=40, seed=7)["choices"][0]["text"]
    b = llm(PROMPT, max_tokens=24, temperature=0.9, top_k=40, seed=7)["choices"][0]["text"]
    assert a == b
    yes_no = llm.create_chat_completion(
        [{"role": "user", "content": "Is the sky blue?"}], grammar='root ::= "yes" | "no"', temperature=0
    )
    assert yes_no["choices"][0]["message"]["content"] in ("yes", "no")
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    obj = llm.create_chat_completion(
        [{"role": "user", "content": "Is the sky blue? Answer in JSON."}],
        response_format={"type": "json_object", "schema": schema},
        temperature=0,
        max_tokens=64,
    )
    assert isinstance(json.loads(obj["choices"][0]["message"]["content"])["ok"], bool)


@needs_model
def test_a_conversation_reads_only_its_new_turns():
    conversation = edgespec.Conversation(llama("hybrid"), system="You are brief.")
    first = conversation.send("Name a colour.", max_tokens=12, temperature=0)
    assert first
    second = conversation.send("Name another.", max_tokens=12, temperature=0)
    assert second and len(conversation.messages) == 5
    assert conversation.last["speculation"]["prompt_tokens_cached"] > 10


@needs_model
def test_two_models_in_two_threads_each_give_their_own_text():
    expected = llama("lookup")(PROMPT, max_tokens=32, temperature=0)["choices"][0]["text"]
    models = [llama("lookup"), llama("none")]
    results = [None, None]

    def run(i):
        results[i] = models[i](PROMPT, max_tokens=32, temperature=0)["choices"][0]["text"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected, expected]


@needs_model
def test_ctrl_c_stops_a_generation_and_the_model_stays_usable():
    llm = llama("lookup")
    expected = llm(PROMPT, max_tokens=24, temperature=0)["choices"][0]["text"]
    seen = []
    # Python turns SIGINT into KeyboardInterrupt only where the process
    # started with SIGINT's default action: a job a shell starts in the
    # background inherits SIGINT ignored, and interrupt_main() then does
    # nothing. Ctrl-C as a user at a terminal sends it is what is tested.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            for chunk in llm(PROMPT, max_tokens=900, temperature=0, stream=True):
                seen.append(chunk)
                if len(seen) == 3:
                    _thread.interrupt_main()
    finally:
        signal.signal(signal.SIGINT, before)
    assert 3 <= len(seen) < 200
    assert llm(PROMPT, max_tokens=24, temperature=0)["choices"][0]["text"] == expected


@needs_model
def test_caches_save_and_load(tmp_path):
    llm = llama("lookup")
    text = llm(PROMPT, max_tokens=16, temperature=0)["choices"][0]["text"]
    saved = llm.save_prompt_cache(str(tmp_path / "prompt.cache"))
    assert saved > 0
    llm.reset()
    assert llm.load_prompt_cache(str(tmp_path / "prompt.cache")) == saved
    llm.save_lookup_memory(str(tmp_path / "memory.bin"))
    other = llama("lookup")
    other.load_lookup_memory(str(tmp_path / "memory.bin"))
    assert other(PROMPT, max_tokens=16, temperature=0)["choices"][0]["text"] == text


def test_a_missing_model_raises_a_model_error(tmp_path):
    with pytest.raises(edgespec.ModelError):
        Llama(str(tmp_path / "absent.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(64))
    with pytest.raises(edgespec.ModelError):
        Llama(str(bad))
    assert issubclass(edgespec.ModelError, edgespec.EdgespecError)


@needs_model
def test_every_error_kind_has_its_class(tmp_path):
    with pytest.raises(edgespec.InvalidArgument):
        Llama(str(SMOLLM2), draft="sideways")
    with pytest.raises(edgespec.InvalidArgument):
        Llama(str(SMOLLM2), draft="model")  # no drafter
    llm = llama("lookup")
    with pytest.raises(edgespec.InvalidArgument):
        llm(PROMPT, temperature=-1)
    with pytest.raises(edgespec.InvalidArgument):
        llm(PROMPT, logprobs=3)
    with pytest.raises(edgespec.ContextFullError):
        llm(" word" * 3000, max_tokens=4)
    with pytest.raises(edgespec.RemoteError):
        Llama(str(SMOLLM2), target_rpc="127.0.0.1:1")
    garbage = tmp_path / "garbage.cache"
    garbage.write_bytes(b"not a cache")
    with pytest.raises(edgespec.GenerationError):
        llm.load_prompt_cache(str(garbage))
    # After every error the model still answers.
    assert llm(PROMPT, max_tokens=4, temperature=0)["usage"]["completion_tokens"] == 4
