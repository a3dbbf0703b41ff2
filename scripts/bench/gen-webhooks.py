#!/usr/bin/env python3
"""Write a pool of distinct, pre-signed QuickBooks CloudEvents webhooks.

Used by scripts/bench-ingest; read by scripts/bench/ingest.lua.

File format: one header line "GWPOOL <record_bytes> <count>\\n", then <count>
complete HTTP/1.1 requests of exactly <record_bytes> bytes each, back to back
(ids and entity ids are zero-padded so every record has the same length; the
Lua script can then slice the file without parsing it).

Each record is POST /webhooks/quickbooks with Content-Type application/json
and intuit-signature = base64(HMAC-SHA256(verifier_token, body)), and a body
that is a CloudEvents array with one event whose id (prefix + index), entity
id and time (both from --first + index) are unique, so every request is a new
event for the gateway: it dedupes on realm + CloudEvent id, and on the change
(realm, entity, entity id, time) that CDC rows share. Give pools sent to the
same store disjoint --first ranges.
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import sys

BODY = ('[{{"specversion":"1.0","id":"{id}","source":"intuit.bench",'
        '"type":"qbo.customer.updated.v1","datacontenttype":"application/json",'
        '"time":"{time}","intuitentityid":"{entity}",'
        '"intuitaccountid":"{realm}","data":{{}}}}]')

HEAD = ('POST /webhooks/quickbooks HTTP/1.1\r\n'
        'Host: 127.0.0.1\r\n'
        'Content-Type: application/json\r\n'
        'intuit-signature: {sig}\r\n'
        'Content-Length: {length}\r\n'
        '\r\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', required=True)
    ap.add_argument('--count', type=int, required=True)
    ap.add_argument('--token', required=True, help='[quickbooks] verifier_token')
    ap.add_argument('--realm', required=True, help='intuitaccountid of every event')
    ap.add_argument('--prefix', required=True, help='event id prefix, unique per pool')
    ap.add_argument('--first', type=int, default=0,
                    help='first entity id (and millisecond after 2026-01-01) of the pool')
    a = ap.parse_args()
    if a.count < 1:
        sys.exit('gen-webhooks: --count must be at least 1')

    key = a.token.encode()
    new = hmac.new
    sha256 = hashlib.sha256
    b64 = base64.b64encode
    epoch = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    ms = datetime.timedelta(milliseconds=1)
    reclen = None
    with open(a.out, 'wb') as f:
        f.write(b' ' * 64)  # header placeholder, rewritten at the end
        start = f.tell()
        chunk = []
        for i in range(a.count):
            n = a.first + i
            t = epoch + n * ms
            body = BODY.format(id='%s-%010d' % (a.prefix, i), entity='%010d' % (n + 1),
                               time=t.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (t.microsecond // 1000),
                               realm=a.realm).encode()
            sig = b64(new(key, body, sha256).digest()).decode()
            rec = HEAD.format(sig=sig, length=len(body)).encode() + body
            if reclen is None:
                reclen = len(rec)
            elif len(rec) != reclen:
                sys.exit('gen-webhooks: record %d has %d bytes, expected %d' % (i, len(rec), reclen))
            chunk.append(rec)
            if len(chunk) >= 8192:
                f.write(b''.join(chunk))
                chunk = []
        f.write(b''.join(chunk))
        assert f.tell() - start == reclen * a.count
        header = ('GWPOOL %d %d' % (reclen, a.count)).ljust(63).encode() + b'\n'
        f.seek(0)
        f.write(header)


if __name__ == '__main__':
    main()
