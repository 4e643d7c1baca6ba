#!/usr/bin/python3
"""A msgpack-RPC server that is not framex, written with Debian's python3-msgpack,
for framex's rpc_client to call. It answers out of order (a call may wait
before it is answered), sends notifications and requests of its own to the
client, and fails with a plain string error. It knows no `framex.hello`, and,
as msgpack-rpc-lite does, it answers a notification it does not know with a
response of msgid -1.

usage: plain_rpc_server.py tcp | unix:PATH
Prints "listening on PORT" (or "listening on unix:PATH") once it accepts, and
exits when its standard input closes or after 120 s.

Methods:
  add(a, b)             a + b
  echo_after(x, ms)     x, answered `ms` milliseconds later (others go first)
  fail(text)            the error object `text` (a string)
  fail_array(text)      the error object [7, text]
  ticks(n)              sends notifications tick(0) .. tick(n-1), then answers n
  notes()               the arguments of every `note` notification received
  ask_client(m, a, b)   calls the client's method m(a, b) and answers its result
                        (an error answer comes back as {"error": <object>})
  flood(m, n)           sends the client n requests m() at once, and answers
                        [answered, refused as overloaded] once all are answered
  drop()                closes the connection without answering
  strays()              for each call of this connection still waiting, sends
                        a response whose msgid is that call's plus 2^32, then
                        answers how many it sent
  framex_seen()         the names of the framex.* messages received, but the hello
"""
import heapq
import os
import select
import socket
import sys
import time

import msgpack


def main():
    where = sys.argv[1]
    if where.startswith("unix:"):
        path = where[5:]
        if os.path.exists(path):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        shown = where
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        shown = str(listener.getsockname()[1])
    listener.listen(16)
    print("listening on", shown, flush=True)

    clients = {}   # socket -> Unpacker
    later = []     # heap of (when, seq, socket, bytes)
    asked = {}     # our msgid -> (client socket, their msgid)
    floods = {}    # our msgid -> the flood it belongs to: [client, their msgid, left, answered, overloaded]
    notes = []
    framex_seen = []
    seq = 0
    give_up = time.monotonic() + 120

    def send(sock, message):
        try:
            sock.sendall(msgpack.packb(message))
        except OSError:
            pass

    while time.monotonic() < give_up:
        timeout = max(0.0, later[0][0] - time.monotonic()) if later else 1.0
        readable, _, _ = select.select([listener, sys.stdin] + list(clients), [], [], timeout)
        now = time.monotonic()
        while later and later[0][0] <= now:
            _, _, sock, message = heapq.heappop(later)
            if sock in clients:
                send(sock, message)
        for r in readable:
            if r is sys.stdin:
                if not sys.stdin.buffer.read1(1024):
                    return
                continue
            if r is listener:
                conn, _ = listener.accept()
                clients[conn] = msgpack.Unpacker(raw=False, strict_map_key=False)
                continue
            data = r.recv(65536)
            if not data:
                del clients[r]
                r.close()
                continue
            unpacker = clients[r]
            unpacker.feed(data)
            for m in unpacker:
                name = m[1] if m[0] == 2 else m[2] if m[0] == 0 else None
                if isinstance(name, str) and name.startswith("framex.") and name != "framex.hello":
                    framex_seen.append(name)
                if m[0] == 2:
                    if m[1] == "note":
                        notes.append(m[2])
                    else:
                        send(r, [1, -1, "unknown notification " + str(m[1]), None])
                    continue
                if m[0] == 1 and m[1] in floods:
                    flood = floods.pop(m[1])
                    flood[2] -= 1
                    if m[2] is None:
                        flood[3] += 1
                    elif isinstance(m[2], dict) and m[2].get("type") == "framex.overloaded":
                        flood[4] += 1
                    if flood[2] == 0:
                        send(flood[0], [1, flood[1], None, [flood[3], flood[4]]])
                    continue
                if m[0] == 1:  # the client's answer to ask_client
                    client, theirs = asked.pop(m[1])
                    result = m[3] if m[2] is None else {"error": m[2]}
                    send(client, [1, theirs, None, result])
                    continue
                _, msgid, method, params = m
                if method == "add":
                    send(r, [1, msgid, None, params[0] + params[1]])
                elif method == "echo_after":
                    seq += 1
                    heapq.heappush(later, (now + params[1] / 1000.0, seq, r, [1, msgid, None, params[0]]))
                elif method == "fail":
                    send(r, [1, msgid, params[0], None])
                elif method == "fail_array":
                    send(r, [1, msgid, [7, params[0]], None])
                elif method == "ticks":
                    for i in range(params[0]):
                        send(r, [2, "tick", [i]])
                    send(r, [1, msgid, None, params[0]])
                elif method == "notes":
                    send(r, [1, msgid, None, notes])
                elif method == "ask_client":
                    seq += 1
                    asked[1000 + seq] = (r, msgid)
                    send(r, [0, 1000 + seq, params[0], params[1:]])
                elif method == "flood":
                    flood = [r, msgid, params[1], 0, 0]
                    burst = []
                    for _ in range(params[1]):
                        seq += 1
                        floods[1000 + seq] = flood
                        burst.append(msgpack.packb([0, 1000 + seq, params[0], []]))
                    r.sendall(b"".join(burst))
                elif method == "strays":
                    waiting = [message[1] for (_, _, sock, message) in later if sock is r]
                    for theirs in waiting:
                        send(r, [1, theirs + 2**32, None, "stray"])
                    send(r, [1, msgid, None, len(waiting)])
                elif method == "framex_seen":
                    send(r, [1, msgid, None, framex_seen])
                elif method == "drop":
                    del clients[r]
                    r.close()
                    break
                else:
                    send(r, [1, msgid, "Unknown method: " + str(method), None])


if __name__ == "__main__":
    main()
