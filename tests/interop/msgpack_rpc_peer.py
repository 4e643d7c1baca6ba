#!/usr/bin/python3
"""Calls a framex worker from a msgpack-RPC peer framex did not write: Debian's
python3-msgpack and a plain socket. It skips framex's hello, pipelines
requests, sends a notification and checks error responses; then, against a
worker that requires a token, it authenticates with the documented hello
(HMAC-SHA256 over both sides' nonces) and checks the worker's proof; last, it
does the same over mutual TLS (Python's ssl module, certificates made with the
openssl command), verifying the worker's certificate for 127.0.0.1.

usage: msgpack_rpc_peer.py WORKER_PROGRAM   (a program that serves with --framex-worker)
"""
import hashlib
import hmac
import os
import select
import socket
import ssl
import subprocess
import sys
import tempfile

import msgpack


def start_worker(program, env=None):
    proc = subprocess.Popen([program, "--framex-worker", "--listen", "127.0.0.1:0", "--threads", "4"],
                            stdout=subprocess.PIPE, text=True, env=env)
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    if not ready:
        proc.kill()
        sys.exit("the worker did not start")
    line = proc.stdout.readline()
    assert "listening on" in line, line
    return proc, int(line.rsplit(":", 1)[1])


class Peer:
    def __init__(self, port, tls=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="127.0.0.1")
        self.unpacker = msgpack.Unpacker(raw=False)

    def send(self, *messages):
        self.sock.sendall(b"".join(msgpack.packb(m) for m in messages))

    def receive(self, count):
        out = []
        while len(out) < count:
            for message in self.unpacker:
                out.append(message)
            if len(out) < count:
                data = self.sock.recv(65536)
                assert data, "the worker closed the connection"
                self.unpacker.feed(data)
        return out


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok:", what)


def main():
    proc, port = start_worker(sys.argv[1])
    try:
        peer = Peer(port)

        # Pipelined: three requests in one write; the slow one answers last.
        peer.send([0, 1, "test.add", [1, 2]], [0, 2, "sleep_then", [300]], [0, 3, "test.add", [3, 4]])
        responses = peer.receive(3)
        check([r[1] for r in responses][-1] == 2, "the slow call of three pipelined ones answers last")
        by_id = {r[1]: r for r in responses}
        check(by_id[1] == [1, 1, None, 3] and by_id[3] == [1, 3, None, 7], "pipelined results match their ids")
        check(by_id[2] == [1, 2, None, 300], "the slow call's result")

        # A notification gets no answer, and the connection stays usable.
        peer.send([2, "framex.cancel", [999]], [0, 4, "test.add", [20, 22]])
        check(peer.receive(1) == [[1, 4, None, 42]], "a notification is not answered; the next request is")

        # Error responses: {code, type, message}.
        peer.send([0, 5, "no.such.function", []])
        (r,) = peer.receive(1)
        check(r[3] is None and r[2]["code"] == 4 and r[2]["type"] == "framex.unknown_function",
              "an unknown function is error code 4")
        peer.send([0, 6, "test.add", [1, "two"]])
        (r,) = peer.receive(1)
        check(r[2]["code"] == 5 and "argument 2" in r[2]["message"], "a bad argument is error code 5, naming it")
        peer.send([0, 7, "throws_invalid", [-1]])
        (r,) = peer.receive(1)
        check(r[2] == {"code": 10, "type": "std::invalid_argument", "message": "x must be positive"},
              "a remote exception carries its type and message")

        # A member function: the object travels first, as a map of its members.
        peer.send([0, 8, "Counter::add", [{"base": 10}, 5]])
        check(peer.receive(1) == [[1, 8, None, 15]], "a member function runs on the object sent")
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    with tempfile.TemporaryDirectory() as tmp:
        token = "python-peer-" + os.urandom(16).hex()
        token_file = os.path.join(tmp, "token")
        with open(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:  # the owner's only
            f.write(token + "\n")
        proc, port = start_worker(sys.argv[1], dict(os.environ, FRAMEX_WORKER__TOKEN_FILE=token_file))
        try:
            authenticated_calls(port, token)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

        # Over mutual TLS.
        def openssl(*args):
            subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                "-subj", "/CN=peer CA", "-keyout", "ca.key", "-out", "ca.pem")
        for name, alt in (("worker", "IP:127.0.0.1"), ("caller", "DNS:caller.example")):
            with open(os.path.join(tmp, name + ".ext"), "w") as f:
                f.write(f"subjectAltName={alt}\nextendedKeyUsage=serverAuth,clientAuth\n")
            openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + name,
                    "-keyout", name + ".key", "-out", name + ".csr")
            openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                    "-days", "1", "-out", name + ".pem", "-extfile", name + ".ext")
        at = lambda name: os.path.join(tmp, name)
        proc, port = start_worker(sys.argv[1], dict(
            os.environ, FRAMEX_WORKER__TOKEN_FILE=token_file, FRAMEX_WORKER__TLS="true",
            FRAMEX_WORKER__CERT_FILE=at("worker.pem"), FRAMEX_WORKER__KEY_FILE=at("worker.key"),
            FRAMEX_WORKER__CA_FILE=at("ca.pem"), FRAMEX_WORKER__REQUIRE_CLIENT_CERT="true"))
        try:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            tls.load_verify_locations(at("ca.pem"))
            tls.load_cert_chain(at("caller.pem"), at("caller.key"))
            authenticated_calls(port, token, tls)
            check(Peer(port, tls).sock.version() in ("TLSv1.2", "TLSv1.3"), "the worker speaks TLS 1.2 or 1.3")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def proof(token, role, first, second):
    return hmac.new(token.encode(), role + first + second, hashlib.sha256).digest()


def authenticated_calls(port, token, tls=None):
    peer = Peer(port, tls)
    peer.send([0, 1, "test.add", [1, 2]])
    (r,) = peer.receive(1)
    check(r[2]["code"] == 9, "before the hello, a call is unauthorized (error code 9)")

    caller_nonce = os.urandom(32)
    peer.send([0, 2, "framex.challenge", [caller_nonce]])
    (r,) = peer.receive(1)
    worker_nonce = r[3]["nonce"]
    check(len(worker_nonce) == 32, "framex.challenge answers with the worker's 32-byte nonce")
    mine = proof(token, b"framex-hello-v1 caller", worker_nonce, caller_nonce)
    peer.send([0, 3, "framex.hello", [1, {}, 1 << 20, {"proof": mine}]])
    (r,) = peer.receive(1)
    check(r[2] is None and r[3]["proof"] == proof(token, b"framex-hello-v1 worker", caller_nonce, worker_nonce),
          "the hello is accepted and the worker proves it holds the token too")
    peer.send([0, 4, "test.add", [20, 22]])
    check(peer.receive(1) == [[1, 4, None, 42]], "after the hello, calls are served")


if __name__ == "__main__":
    main()
