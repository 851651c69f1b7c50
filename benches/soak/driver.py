#!/usr/bin/env python3
"""The authorization-server and large-body parts of benches/soak.sh, for SECONDS seconds:

  driver.py grants HOST PORT SECONDS USER PASSWORD CLIENT_ID CLIENT_SECRET CALLBACK
      loops: log in (the login form, a real password check), authorize (the app skips
      consent), redeem the code with PKCE, refresh the tokens five times, use the access token
      on the proxied route once; prints counts at the end.

  driver.py bodies HOST PORT SECONDS TOKEN MIB
      loops: upload MIB MiB to the proxied route (POST), download MIB MiB from /big.

Only 127.0.0.1 is a target (the caller passes it); certificates are not verified (the bench's
own throwaway certificate). Exits 1 if any step failed more than 1% of the time.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import ssl
import sys
import time
import urllib.parse


def connect(host, port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection(host, port, context=ctx, timeout=30)


class Session:
    """One keep-alive connection with a cookie jar (name -> value)."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = connect(host, port)
        self.cookies = {}

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = connect(self.host, self.port)
                if attempt:
                    raise
        for name, value in r.getheaders():
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                k, _, v = pair.partition("=")
                if v:
                    self.cookies[k.strip()] = v.strip()
                else:
                    self.cookies.pop(k.strip(), None)
        return r, data


def form(fields):
    return urllib.parse.urlencode(fields), {"Content-Type": "application/x-www-form-urlencoded"}


def grants(host, port, seconds, user, password, client_id, secret, callback):
    counts = {"login": 0, "code": 0, "refresh": 0, "proxied": 0, "failed": 0}
    basic = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        s = Session(host, port)
        try:
            r, page = s.request("GET", "/login")
            csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
            body, h = form({"csrf_token": csrf, "username": user, "password": password, "return_to": "/"})
            r, _ = s.request("POST", "/login", body, h)
            assert r.status in (302, 303), f"login answered {r.status}"
            counts["login"] += 1
            verifier = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            q = urllib.parse.urlencode({
                "response_type": "code", "client_id": client_id, "redirect_uri": callback,
                "scope": "READ", "state": "soak", "code_challenge": challenge,
                "code_challenge_method": "S256",
            })
            r, _ = s.request("GET", "/oauth2/authorize?" + q)
            assert r.status in (302, 303), f"authorize answered {r.status}"
            code = urllib.parse.parse_qs(urllib.parse.urlparse(r.getheader("Location")).query)["code"][0]
            body, h = form({"grant_type": "authorization_code", "code": code,
                            "redirect_uri": callback, "code_verifier": verifier})
            h["Authorization"] = basic
            r, data = s.request("POST", "/oauth2/token", body, h)
            assert r.status == 200, f"code exchange answered {r.status} {data[:200]!r}"
            tokens = json.loads(data)
            counts["code"] += 1
            for _ in range(5):
                body, h = form({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
                h["Authorization"] = basic
                r, data = s.request("POST", "/oauth2/token", body, h)
                assert r.status == 200, f"refresh answered {r.status} {data[:200]!r}"
                tokens = json.loads(data)
                counts["refresh"] += 1
            r, _ = s.request("GET", "/", headers={"Authorization": "Bearer " + tokens["access_token"]})
            assert r.status == 200, f"proxied request answered {r.status}"
            counts["proxied"] += 1
        except (AssertionError, AttributeError, KeyError, OSError, http.client.HTTPException) as e:
            counts["failed"] += 1
            print(f"driver.py grants: {e}", file=sys.stderr)
            time.sleep(0.5)
        finally:
            s.conn.close()
    print("grants " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    done = counts["login"] + counts["code"] + counts["refresh"]
    return 1 if counts["failed"] > max(1, done // 100) else 0


def bodies(host, port, seconds, token, mib):
    counts = {"uploads": 0, "downloads": 0, "failed": 0}
    payload = os.urandom(1 << 20) * mib
    auth = {"Authorization": "Bearer " + token}
    s = Session(host, port)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            r, _ = s.request("POST", "/upload", payload, dict(auth, **{"Content-Type": "application/octet-stream"}))
            assert r.status == 200, f"upload answered {r.status}"
            counts["uploads"] += 1
            r, data = s.request("GET", "/big", headers=auth)
            assert r.status == 200 and len(data) == mib << 20, f"download answered {r.status}, {len(data)} bytes"
            counts["downloads"] += 1
        except (AssertionError, OSError, http.client.HTTPException) as e:
            counts["failed"] += 1
            print(f"driver.py bodies: {e}", file=sys.stderr)
            time.sleep(0.5)
    print("bodies " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    done = counts["uploads"] + counts["downloads"]
    return 1 if counts["failed"] > max(1, done // 100) else 0


def main():
    mode, host, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    if mode == "grants":
        return grants(host, port, seconds, *sys.argv[5:10])
    if mode == "bodies":
        return bodies(host, port, seconds, sys.argv[5], int(sys.argv[6]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
