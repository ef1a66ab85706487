"""POSTs a tag's new pull spec to a URL whenever imagestreams moves the tag:
a durable JetStream consumer of TagsChanged (see proto/asyncapi.yaml). An
event is acknowledged only once the POST succeeded, so a restart neither
misses nor repeats work (a failed POST is retried after 5 s).

The protobuf classes are generated from proto/ (see ../README.md):
    python -m grpc_tools.protoc -I proto --python_out=GEN proto/imagestreams/v1/*.proto
    PYTHONPATH=GEN:examples/python python -m on_tag_changed --namespace ns1 \\
        [--stream app] --tag latest --durable notify-app --url http://ci.example/hook
"""

import argparse
import asyncio
import json
import sys
import urllib.request

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from imagestreams.v1 import events_pb2

SAFE = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


def token(text: str) -> str:
    """A namespace or name as one NATS token (`ruby.v2` is `ruby=2Ev2`)."""
    data = text.encode()
    return "".join(chr(b) if b in SAFE else f"={b:02X}" for b in data) or "="


def post(url: str, body: dict) -> None:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()


async def main() -> None:
    p = argparse.ArgumentParser(prog="on_tag_changed")
    p.add_argument("--nats", default="nats://127.0.0.1:4222")
    p.add_argument("--namespace", required=True)
    p.add_argument("--stream")
    p.add_argument("--tag", required=True)
    p.add_argument("--durable", required=True)
    p.add_argument("--url", required=True)
    args = p.parse_args()

    js = (await nats.connect(args.nats)).jetstream()
    name = token(args.stream) if args.stream else "*"
    subject = f"imagestreams.tags.changed.{token(args.namespace)}.{name}"
    # on first start, changes from now on; after a restart, from where it stopped
    config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW, ack_wait=120)
    sub = await js.pull_subscribe(subject, durable=args.durable, stream="IMAGESTREAMS_TAGS", config=config)
    print(f"on_tag_changed: waiting for {args.namespace}/{args.stream or '*'}:{args.tag}", file=sys.stderr, flush=True)
    while True:
        try:
            messages = await sub.fetch(1, timeout=5)
        except nats.errors.TimeoutError:
            continue
        for message in messages:
            event = events_pb2.TagsChanged.FromString(message.data)
            try:
                for change in event.changes:
                    if change.tag == args.tag and change.new_image:
                        print(f"{event.namespace}/{event.stream}:{change.tag} -> {change.docker_image_reference}", flush=True)
                        await asyncio.to_thread(post, args.url, {
                            "namespace": event.namespace, "stream": event.stream, "tag": change.tag,
                            "image": change.new_image, "pullSpec": change.docker_image_reference,
                        })
                await message.ack()
            except OSError as error:
                print(f"on_tag_changed: {error}; retrying in 5 s", file=sys.stderr, flush=True)
                await message.nak(delay=5)


if __name__ == "__main__":
    asyncio.run(main())
