#!/usr/bin/env python3
"""Dump CDC topics as they are on the broker, for offline tests.

Reads every record of the topics whose names match --topics (default: the table topics
`<prefix>.<database>.<table>` of scripts/debezium), from the first offset of each partition
to its end as of the start of the dump, and writes into --out:

  records.jsonl       one JSON object a record, ordered by topic, partition, offset:
                      {"topic", "partition", "offset", "timestamp" (ms), "timestamp_type",
                       "key" (hex or null), "value" (hex or null: a tombstone), "headers"}
  schemas/<id>.json   for each id that a key or value in the Confluent framing (0x00 + 4-byte
                      big-endian id) references: {"id", "schema": the body of
                      GET /schemas/ids/<id>, exactly as returned, "versions": the body of
                      GET /schemas/ids/<id>/versions (subject and version)}

Run through `scripts/debezium dump DIR [--topics REGEX]`, which provides a Python with
confluent-kafka.
"""
import argparse
import json
import os
import re
import sys
import urllib.request
import uuid

from confluent_kafka import Consumer, TopicPartition


def http_json(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read().decode("utf-8"))


def schema_id(data):
    if data is not None and len(data) >= 5 and data[0] == 0:
        return int.from_bytes(data[1:5], "big")
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--registry", default="http://127.0.0.1:8081/apis/ccompat/v7",
                    help="the registry's Confluent-compatible API")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--topics", default=r"^(primary|replica)\.[^.]+\.[^.]+$",
                    help="regular expression of the topics to dump")
    args = ap.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "cdc-verifier-dump-" + uuid.uuid4().hex,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })
    meta = consumer.list_topics(timeout=10)
    pattern = re.compile(args.topics)
    topics = sorted(t for t in meta.topics if pattern.search(t))
    if not topics:
        sys.exit(f"no topic matches {args.topics!r}")

    ends = {}
    assignment = []
    for topic in topics:
        for p in sorted(meta.topics[topic].partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[(topic, p)] = high
                assignment.append(TopicPartition(topic, p, low))
    records = []
    if assignment:
        consumer.assign(assignment)
        remaining = dict(ends)
        idle = 0
        while remaining:
            msg = consumer.poll(1.0)
            if msg is None:
                idle += 1
                if idle > 30:
                    sys.exit(f"timed out; still waiting for {sorted(remaining)}")
                continue
            idle = 0
            key = (msg.topic(), msg.partition())
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    continue
                sys.exit(f"consume error: {msg.error()}")
            if key not in remaining or msg.offset() >= remaining[key]:
                continue
            ts_type, ts = msg.timestamp()
            records.append({
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "timestamp": ts,
                "timestamp_type": {1: "CreateTime", 2: "LogAppendTime"}.get(ts_type, "NotAvailable"),
                "key": msg.key().hex() if msg.key() is not None else None,
                "value": msg.value().hex() if msg.value() is not None else None,
                "headers": [[k, v.hex() if v is not None else None] for k, v in (msg.headers() or [])],
            })
            if msg.offset() + 1 >= remaining[key]:
                del remaining[key]
    consumer.close()

    records.sort(key=lambda r: (r["topic"], r["partition"], r["offset"]))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "records.jsonl"), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")

    ids = set()
    for r in records:
        for field in ("key", "value"):
            if r[field] is not None:
                i = schema_id(bytes.fromhex(r[field]))
                if i is not None:
                    ids.add(i)
    if ids:
        sdir = os.path.join(args.out, "schemas")
        os.makedirs(sdir, exist_ok=True)
        for i in sorted(ids):
            doc = {
                "id": i,
                "schema": http_json(f"{args.registry}/schemas/ids/{i}"),
                "versions": http_json(f"{args.registry}/schemas/ids/{i}/versions"),
            }
            with open(os.path.join(sdir, f"{i}.json"), "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2, ensure_ascii=False)
                f.write("\n")
    per_topic = {}
    for r in records:
        per_topic[r["topic"]] = per_topic.get(r["topic"], 0) + 1
    for t in topics:
        print(f"{t}: {per_topic.get(t, 0)} records", file=sys.stderr)
    print(f"{len(records)} records, {len(ids)} schemas -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
