#!/usr/bin/python3
"""Sends the requests of a JSON file with httpx (HTTP/2 through python3-h2, or HTTP/1.1) and
prints one JSON line per request: the status and whether the body arrived whole, or the error.

    refusals.py --http2|--http1 --ca CA [--cert CERT --key KEY] BASE_URL REQUESTS.json

Each request: {"method", "path", "headers": {...}, "body": "..."}. All requests of a run share
one client, so HTTP/2 requests are streams of one connection when the server keeps it open.
The server's certificate is always verified against CA.
"""
import argparse
import json
import ssl
import sys

import httpx


def main():
    parser = argparse.ArgumentParser()
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--http2", action="store_true")
    group.add_argument("--http1", action="store_true")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("base_url")
    parser.add_argument("requests")
    args = parser.parse_args()

    context = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    with open(args.requests) as f:
        requests = json.load(f)
    with httpx.Client(http1=args.http1, http2=args.http2, verify=context, timeout=30) as client:
        for request in requests:
            body = request.get("body", "").encode()
            try:
                response = client.request(
                    request["method"],
                    args.base_url + request["path"],
                    headers=request.get("headers", {}),
                    content=body if body else None,
                )
                problem = response.json() if response.content else None
                print(json.dumps({
                    "status": response.status_code,
                    "http_version": response.http_version,
                    "type": problem.get("type") if isinstance(problem, dict) else None,
                }))
            except Exception as error:  # the failure itself is the result
                print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
