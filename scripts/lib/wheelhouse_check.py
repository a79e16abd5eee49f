"""Check that a wheelhouse holds a wheel for every pin of a lock file.

usage: python wheelhouse_check.py LOCK FOLDER

Exits with status 1 naming the pins (name==version) without a wheel; prints how many pins
were found otherwise. Used by scripts/lib/images.sh after downloading a lock's wheels.
"""

import re
import sys
from pathlib import Path


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(lock: str, folder: str) -> int:
    pins = {}
    for line in Path(lock).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if m:
            pins[norm(m.group(1))] = m.group(2)
    have = {}
    for whl in Path(folder).glob("*.whl"):
        name, ver = whl.name.split("-")[:2]
        have[norm(name)] = ver
    missing = sorted(f"{n}=={v}" for n, v in pins.items() if have.get(n) != v)
    if missing:
        print("wheelhouse lacks: " + ", ".join(missing), file=sys.stderr)
        return 1
    print(f"    all {len(pins)} pins have a wheel")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
