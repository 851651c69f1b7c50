#!/usr/bin/env python3
"""Clients for benches/memory.sh: idle TLS keep-alive connections and a token-cache filler.

  clients.py hold HOST PORT N [--header 'Name: value']
      opens N TLS 1.3 connections (HTTP/1.1), sends one GET / on each and reads its answer,
      then keeps every connection open and idle. Prints `held N` once all are idle, then waits
      for a line on stdin: `check` prints `alive N` (connections the server has not closed),
      `quit` (or end of input) closes them all and exits.

  clients.py fill HOST PORT TOKENS_FILE [--connections C]
      sends one GET / per token of TOKENS_FILE (one a line, `Authorization: Bearer TOKEN`)
      over C keep-alive TLS connections; prints `filled N ok M other` and exits 1 unless every
      answer was 200.

Only 127.0.0.1 is ever a target (the caller passes it). Certificates are not verified: the
bench's certificate is a throwaway self-signed one.
"""

import argparse
import asyncio
import ssl
import sys


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def exchange(reader, writer, host, headers):
    """One GET / on an open connection; returns the status code."""
    lines = [f"GET / HTTP/1.1", f"Host: {host}"] + headers
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def hold(args):
    ctx = tls_context()
    conns = []
    gate = asyncio.Semaphore(args.concurrency)
    failures = 0

    async def open_one():
        nonlocal failures
        async with gate:
            for attempt in range(5):
                try:
                    reader, writer = await asyncio.open_connection(args.host, args.port, ssl=ctx)
                    status = await exchange(reader, writer, args.host, args.header)
                    if status != 200:
                        raise RuntimeError(f"status {status}")
                    conns.append((reader, writer))
                    return
                except (OSError, RuntimeError, asyncio.IncompleteReadError) as e:
                    if attempt == 4:
                        failures += 1
                        print(f"clients.py: connection failed: {e}", file=sys.stderr)
                    await asyncio.sleep(0.2 * (attempt + 1))

    await asyncio.gather(*(open_one() for _ in range(args.n)))
    print(f"held {len(conns)}" + (f" ({failures} failed)" if failures else ""), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() == "check":
            alive = 0
            for reader, _ in conns:
                # A server that closed the connection shows as EOF (or an error) on a read
                # that does not wait.
                try:
                    data = await asyncio.wait_for(reader.read(1), 0.001)
                    if data:
                        alive += 1  # unexpected bytes, but the connection is open
                except asyncio.TimeoutError:
                    alive += 1
                except OSError:
                    pass
            print(f"alive {alive}", flush=True)
        else:
            break
    for _, writer in conns:
        writer.close()


async def fill(args):
    ctx = tls_context()
    with open(args.tokens) as f:
        tokens = [line.strip() for line in f if line.strip()]
    counts = {"ok": 0, "other": 0}

    async def worker(share):
        reader, writer = await asyncio.open_connection(args.host, args.port, ssl=ctx)
        for token in share:
            status = await exchange(reader, writer, args.host, [f"Authorization: Bearer {token}"])
            counts["ok" if status == 200 else "other"] += 1
        writer.close()

    c = args.connections
    await asyncio.gather(*(worker(tokens[i::c]) for i in range(c)))
    print(f"filled {len(tokens)} ok {counts['ok']} other {counts['other']}", flush=True)
    return 0 if counts["other"] == 0 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    h = sub.add_parser("hold")
    h.add_argument("host")
    h.add_argument("port", type=int)
    h.add_argument("n", type=int)
    h.add_argument("--header", action="append", default=[])
    h.add_argument("--concurrency", type=int, default=64)
    f = sub.add_parser("fill")
    f.add_argument("host")
    f.add_argument("port", type=int)
    f.add_argument("tokens")
    f.add_argument("--connections", type=int, default=16)
    args = p.parse_args()
    if args.mode == "hold":
        asyncio.run(hold(args))
        return 0
    return asyncio.run(fill(args))


if __name__ == "__main__":
    sys.exit(main())
