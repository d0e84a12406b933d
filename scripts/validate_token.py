#!/usr/bin/env python3
"""Reference validator of keygate token strings (docs/token-format.md).

Reads one candidate token per line on stdin and prints `valid` or `invalid` for each.
Exits 0 if every line was valid, 1 otherwise (2 on bad usage). Standard library only.

    printf '%s\n' "$token" | python3 scripts/validate_token.py --prefix kg
"""

import argparse
import re
import sys
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CHECKSUM_LEN = 6
MAX_TOKEN_LEN = 256
PREFIX = re.compile(r"[a-z](?:[a-z0-9_]{0,30}[a-z0-9])?")


def base62_fixed(n: int) -> str:
    """`n` in base 62 (alphabet 0-9, A-Z, a-z), left-padded with `0` to 6 characters."""
    digits = ""
    while n:
        n, r = divmod(n, 62)
        digits = ALPHABET[r] + digits
    return digits.rjust(CHECKSUM_LEN, "0")


def pattern(prefix: str) -> "re.Pattern[str]":
    """The whole-token regular expression for `prefix`."""
    return re.compile(prefix + r"_[a-z0-9_-]{1,64}_[0-9A-Za-z]{28,92}")


def is_valid(token: str, whole: "re.Pattern[str]") -> bool:
    if len(token) > MAX_TOKEN_LEN or not token.isascii():
        return False
    if not whole.fullmatch(token):
        return False
    body, checksum = token[:-CHECKSUM_LEN], token[-CHECKSUM_LEN:]
    return base62_fixed(zlib.crc32(body.encode("ascii"))) == checksum


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="kg", help="the issuer's token prefix (default kg)")
    args = parser.parse_args()
    if not PREFIX.fullmatch(args.prefix):
        print("invalid prefix: 1 to 32 of a-z, 0-9, _; a letter first, no _ last", file=sys.stderr)
        return 2
    whole = pattern(args.prefix)
    all_valid = True
    out = []
    for line in sys.stdin:
        token = line.rstrip("\n").rstrip("\r")
        ok = is_valid(token, whole)
        all_valid = all_valid and ok
        out.append("valid" if ok else "invalid")
    sys.stdout.write("".join(s + "\n" for s in out))
    return 0 if all_valid else 1


if __name__ == "__main__":
    sys.exit(main())
