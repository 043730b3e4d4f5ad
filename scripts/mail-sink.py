#!/usr/bin/env python3
"""A local SMTP server that keeps what it receives, with a web inbox.

`make run` starts it for development (SMTP on 127.0.0.1:1025, inbox on http://127.0.0.1:1080)
and the tests start their own. It is aiosmtpd's SMTP server; only the handler, which keeps the
messages in memory, and the inbox are ours.

    mail-sink.py [--smtp HOST:PORT] [--http HOST:PORT] [--tls-cert F --tls-key F [--implicit-tls]]

A port of 0 takes a free one. Once both listen it prints one JSON line to stdout:
{"smtp": PORT, "http": PORT}.

Recipients whose local part starts with `refuse-` are refused with a permanent 550, those
starting with `tempfail-` with a transient 451, so that tests can reach both paths.

The inbox: `GET /` (HTML list), `GET /messages[?to=ADDRESS]` (JSON, oldest first: id,
received_at, from, to, subject, message_id, text, html, raw), `DELETE /messages`.
"""

import argparse
import asyncio
import email
import email.policy
import html
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from aiosmtpd.smtp import SMTP

MESSAGES = []
LOCK = threading.Lock()


def host_port(value):
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


class Keeper:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("refuse-"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("tempfail-"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        msg = email.message_from_string(raw, policy=email.policy.default)
        text_part = msg.get_body(preferencelist=("plain",))
        html_part = msg.get_body(preferencelist=("html",))
        with LOCK:
            MESSAGES.append(
                {
                    "id": len(MESSAGES) + 1,
                    "received_at": time.time(),
                    "from": envelope.mail_from,
                    "to": list(envelope.rcpt_tos),
                    "subject": str(msg.get("Subject", "")),
                    "message_id": str(msg.get("Message-ID", "")),
                    "headers": {k: str(v) for k, v in msg.items()},
                    "text": text_part.get_content() if text_part else "",
                    "html": html_part.get_content() if html_part else "",
                    "raw": raw,
                    # session.ssl is set by STARTTLS only; implicit TLS shows on the transport.
                    "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
                    "authenticated": bool(session.authenticated),
                }
            )
        return "250 Message accepted for delivery"


def selected(query):
    to = parse_qs(query).get("to", [None])[0]
    with LOCK:
        items = list(MESSAGES)
    if to:
        items = [m for m in items if any(r.lower() == to.lower() for r in m["to"])]
    return items


class Inbox(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body, kind):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/messages":
            return self.send(200, json.dumps(selected(url.query)), "application/json")
        if url.path == "/":
            rows = "".join(
                "<article><h2>{}</h2><p>To {} · {}</p><pre>{}</pre></article>".format(
                    html.escape(m["subject"]),
                    html.escape(", ".join(m["to"])),
                    time.strftime("%H:%M:%S", time.localtime(m["received_at"])),
                    html.escape(m["text"]),
                )
                for m in reversed(selected(url.query))
            )
            page = f"<!doctype html><meta charset=utf-8><title>Mail sink</title><h1>Mail sink</h1>{rows or '<p>No mail yet.</p>'}"
            return self.send(200, page, "text/html; charset=utf-8")
        return self.send(404, '{"error":"not_found"}', "application/json")

    def do_DELETE(self):
        if urlparse(self.path).path != "/messages":
            return self.send(404, '{"error":"not_found"}', "application/json")
        with LOCK:
            MESSAGES.clear()
        return self.send(204, "", "application/json")


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smtp", default="127.0.0.1:1025")
    parser.add_argument("--http", default="127.0.0.1:1080")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--auth", help="USER:PASSWORD the server requires (over TLS only)")
    args = parser.parse_args()

    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        user, _, password = (args.auth or "").partition(":")
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok)

    def factory():
        options = {}
        if context is not None and not args.implicit_tls:
            options.update(tls_context=context, require_starttls=True)
        if args.auth:
            # aiosmtpd knows only STARTTLS as TLS: with implicit TLS the connection is encrypted
            # from the first byte, so AUTH must not wait for a STARTTLS that never comes.
            require_tls = context is not None and not args.implicit_tls
            options.update(authenticator=authenticator, auth_required=True, auth_require_tls=require_tls)
        return SMTP(Keeper(), hostname="mail-sink.localhost", **options)

    loop = asyncio.get_running_loop()
    host, port = host_port(args.smtp)
    server = await loop.create_server(
        factory, host, port, ssl=context if args.implicit_tls else None
    )
    smtp_port = server.sockets[0].getsockname()[1]

    inbox = ThreadingHTTPServer(host_port(args.http), Inbox)
    threading.Thread(target=inbox.serve_forever, daemon=True).start()
    print(json.dumps({"smtp": smtp_port, "http": inbox.server_address[1]}), flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
