"""Merge one run of scripts/build-images.sh into $LAKEHUB_HOME/images/build.json.

usage: python build_record.py PATH ENGINE CONTAINERS_CONF WHAT SECONDS [NAME=JSON ...]

PATH gets {"engine", "containers_conf", "images": {NAME: {...}}, "last_run": {"what",
"seconds"}}: each NAME=JSON given replaces that image's entry, entries of images not built
in this run are kept. Written to a temporary file, then renamed.
"""

import json
import os
import sys


def merge(path: str, engine: str, conf: str, what: str, seconds: str, records: list[str]) -> dict:
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        old = {}
    images = old.get("images") if isinstance(old.get("images"), dict) else {}
    for item in records:
        name, _, text = item.partition("=")
        images[name] = json.loads(text)
    return {
        "engine": engine,
        "containers_conf": conf,
        "images": images,
        "last_run": {"what": what, "seconds": int(seconds)},
    }


def main(argv: list[str]) -> int:
    path, engine, conf, what, seconds, *records = argv
    data = merge(path, engine, conf, what, seconds, records)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
