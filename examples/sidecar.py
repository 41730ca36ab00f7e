#!/usr/bin/env python3
"""A vigil sidecar: run a service only while this node is the valid primary.

Follows the node's authority, either straight from the control socket
(`--socket /run/vigil/node1.sock`, the `subscribe` request of docs/control.md)
or through `vigil watch --json` (`--watch`, with `--vigil` and its arguments),
and starts the service when this node becomes the valid primary, stops it when
it stops being one, printing the fencing token each time. The service here is a
dummy (`sleep`) unless `--start`/`--stop` name real commands; a real service
stamps every write with the token so that storage can refuse a stale primary.

When the daemon goes away the service is stopped (its authority can no longer
be renewed) and the sidecar exits 1: restart it with the daemon (systemd
`BindsTo=`).

Python 3 standard library only.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time


def lines_from_socket(path):
    """Yield the subscription's lines (dicts) from the control socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b'{"cmd":"subscribe"}\n')
    with s.makefile("r", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def lines_from_watch(argv):
    """Yield the lines of `vigil watch --json`."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        for line in p.stdout:
            yield json.loads(line)
    finally:
        p.terminate()
        p.wait()


class Service:
    """The service this sidecar runs: a command started and stopped."""

    def __init__(self, start, stop):
        self.start_cmd = start
        self.stop_cmd = stop
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, token):
        if self.running():
            return
        env = dict(os.environ, VIGIL_TOKEN=str(token))
        self.proc = subprocess.Popen(self.start_cmd, env=env)
        say("started service (pid %d) with token %s" % (self.proc.pid, token))

    def stop(self, why):
        if not self.running():
            return
        if self.stop_cmd:
            subprocess.call(self.stop_cmd)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        say("stopped service: %s" % why)


def say(text):
    print("sidecar: " + text, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--socket", help="the node's control socket")
    src.add_argument("--watch", action="store_true",
                     help="follow `vigil watch --json` (give its arguments after --)")
    ap.add_argument("--vigil", default="vigil", help="the vigil binary (with --watch)")
    ap.add_argument("--start", nargs="+", default=["sleep", "1000000"],
                    help="the service's command (default: a dummy sleep)")
    ap.add_argument("--stop", nargs="+", default=None,
                    help="run before the service is terminated")
    ap.add_argument("watch_args", nargs="*", help="with --watch: --socket PATH, --node NAME ...")
    args = ap.parse_args()

    service = Service(args.start, args.stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.socket:
        lines = lines_from_socket(args.socket)
    else:
        lines = lines_from_watch([args.vigil, "watch", "--json"] + args.watch_args)
    try:
        for a in lines:
            if a.get("protocol") != 1:
                say("unknown protocol %r; stopping" % a.get("protocol"))
                return 1
            say("%s: token %s primary %s is_primary %s holds %s"
                % (a["event"], a["token"], a["primary"], a["is_primary"], a["holds"]))
            if a["holds"] and a["is_primary"]:
                service.start(a["token"])
            else:
                service.stop("this node is no longer the valid primary (token %s)" % a["token"])
        service.stop("the daemon went away")
        return 1
    except (OSError, ValueError) as e:
        service.stop("lost the node: %s" % e)
        return 1
    finally:
        service.stop("the sidecar stops")


if __name__ == "__main__":
    sys.exit(main())
