#!/usr/bin/env python3
"""Inserts N personal access tokens of user `bench` (scope READ, valid for a day) into a
gatehouse SQLite store and writes the tokens, one a line, to TOKENS_FILE: what
benches/memory.sh and benches/soak.sh send to fill the token cache. The rows are what
`gatehouse token create` writes (the SHA-256 of the token as presented, times in microseconds);
last use is set to now so that validating them writes nothing.

  seed_pats.py DB_FILE N TOKENS_FILE
"""

import base64
import hashlib
import os
import sqlite3
import sys
import time
import uuid


def main():
    db, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    now = int(time.time() * 1_000_000)
    day = 86_400 * 1_000_000
    rows, tokens = [], []
    for i in range(n):
        token = "gh_pat_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        digest = hashlib.sha256(token.encode()).digest()
        rows.append((uuid.uuid4().hex, "bench", f"bench {i}", "READ", digest, now, now + day, now))
        tokens.append(token)
    con = sqlite3.connect(db, timeout=30)
    with con:
        con.executemany(
            "INSERT INTO personal_tokens (id, user_name, display_name, scope, token_hash, "
            "create_time, expire_time, last_used_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    con.close()
    with open(out, "w") as f:
        f.write("\n".join(tokens) + "\n")


if __name__ == "__main__":
    main()
