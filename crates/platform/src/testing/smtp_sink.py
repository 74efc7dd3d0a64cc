"""A real SMTP server on loopback for tests (aiosmtpd).

Listens on 127.0.0.1 on a free port, prints {"port": N} as its first line, then one JSON line
per message received: envelope sender and recipients, subject, and the decoded text and HTML
parts. Exits when its standard input closes, i.e. when the test that started it ends.
"""

import asyncio
import email
import json
import sys
from email import policy

from aiosmtpd.smtp import SMTP


class Recorder:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(message["subject"]),
            "content_type": message.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        print(json.dumps(record), flush=True)
        return "250 Message accepted for delivery"


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Recorder(), hostname="sink.test"), host="127.0.0.1", port=0
    )
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
