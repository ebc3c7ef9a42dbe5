"""A Python process holding a few hundred MiB of ordinary application objects.

Run as ``python _pyheap_child.py MIB SEED READY_FD``. It builds, from ``random.Random(SEED)``
alone, what a service keeps in memory: JSON-like user records (dicts of strings, ints,
floats, bools, nested dicts and lists), an index dict from names to records, lists of
ints, an event log of tuples, some text documents and a few bytes blobs (half of them
random, as compressed or encrypted payloads are). The amounts follow MIB through a
fixed recipe, not a measurement, so that the same arguments build the same heap.

Then it writes ``ready rss_kib=N`` on READY_FD and blocks reading stdin: it exits when
stdin is closed (or on SIGTERM). It writes nothing else.
"""

from __future__ import annotations

import random
import sys

# Vocabulary for the strings: a service's data is words, names and identifiers, not noise.
_SYLLABLES = [
    "ka",
    "ri",
    "to",
    "na",
    "mo",
    "se",
    "lu",
    "vi",
    "an",
    "der",
    "ost",
    "ba",
    "ne",
    "el",
    "ia",
    "or",
    "un",
    "pe",
    "co",
    "ma",
    "li",
    "ra",
    "ti",
    "so",
    "gar",
    "ven",
    "hol",
    "mar",
    "ber",
    "sch",
    "ich",
    "ung",
    "ter",
    "ste",
]
_DOMAINS = ("example.com", "mail.example.org", "corp.example.net", "users.example.io")
_CITIES = ("Lyon", "Porto", "Gdansk", "Tampere", "Graz", "Ghent", "Bilbao", "Brno", "Aarhus")
_STATUSES = ("active", "suspended", "pending", "closed")
_EVENTS = ("login", "logout", "purchase", "view", "search", "refund", "update")


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))


def _record(rng: random.Random, i: int) -> dict[str, object]:
    first, last = _word(rng).capitalize(), _word(rng).capitalize()
    return {
        "id": i,
        "uuid": f"{rng.getrandbits(128):032x}",
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}@{rng.choice(_DOMAINS)}",
        "age": rng.randint(18, 90),
        "balance": round(rng.uniform(-500.0, 25000.0), 2),
        "active": rng.random() < 0.8,
        "status": rng.choice(_STATUSES),
        "tags": [_word(rng) for _ in range(rng.randint(0, 5))],
        "address": {
            "street": f"{rng.randint(1, 300)} {_word(rng).capitalize()} Street",
            "city": rng.choice(_CITIES),
            "zip": f"{rng.randint(10000, 99999)}",
        },
        "scores": [rng.randint(0, 1000) for _ in range(rng.randint(2, 12))],
        "created": 1_600_000_000 + rng.randint(0, 100_000_000),
    }


def build(mib: int, seed: int) -> list[object]:
    """The heap: about ``mib`` MiB of objects (a fixed recipe per MiB)."""
    rng = random.Random(seed)
    keep: list[object] = []
    # Per MiB (measured: 1 MiB of RSS each, within a few percent): 440 records with
    # their strings and index entry, 26 lists of 64 ints, 680 events, 12 text
    # documents and 8 page-sized bytes blobs (32 KiB: half random, half text).
    records = [_record(rng, i) for i in range(440 * mib)]
    keep.append(records)
    keep.append({r["email"]: r for r in records})
    keep.append([[rng.randint(0, 1 << 40) for _ in range(64)] for _ in range(26 * mib)])
    keep.append(
        [
            (rng.choice(_EVENTS), rng.randint(0, len(records) - 1), rng.random())
            for _ in range(680 * mib)
        ]
    )
    keep.append(
        [" ".join(_word(rng) for _ in range(rng.randint(40, 200))) for _ in range(12 * mib)]
    )
    blobs: list[bytes] = []
    for k in range(8 * mib):
        if k % 2:
            blobs.append(rng.randbytes(4096))  # compressed or encrypted payloads
        else:
            blobs.append(" ".join(_word(rng) for _ in range(600)).encode()[:4096])
    keep.append(blobs)
    return keep


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    mib, seed, ready_fd = (int(a) for a in sys.argv[1:4])
    # The random module seeded its hidden global instance from os.urandom on import:
    # that state (2.5 KiB) would differ from run to run.
    random.seed(seed)
    heap = build(mib, seed)
    with open(ready_fd, "w", closefd=True) as ready:
        ready.write(f"ready rss_kib={_rss_kib()}\n")
    # Block until the parent closes stdin: no allocation, no writes, while it is read.
    sys.stdin.buffer.read()
    del heap


if __name__ == "__main__":
    main()
