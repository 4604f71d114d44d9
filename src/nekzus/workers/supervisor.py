"""The supervisor: forks the workers, relays their events, restarts one that dies, stops them all.

It stays small and synchronous (no event loop, no app): the listening socket, the TLS files and the
shared memory are prepared before it starts, and each worker inherits them through fork.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nekzus.workers import WorkerInfo
from nekzus.workers.relay import MAX_BUFFERED, READY, split_frames
from nekzus.workers.shared import SharedState

log = logging.getLogger("nekzus.workers")

# A worker that dies is forked again after a delay that doubles (from RESTART_DELAY up to
# MAX_RESTART_DELAY); more than MAX_RESTARTS deaths of one worker within RESTART_WINDOW seconds stop
# the whole server (exit 1) instead of looping forever on a broken start. A worker whose start-up hooks
# fail exits by itself (code 1, see `nekzus.workers.wiring`) and so goes through the same restarts.
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 10.0
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
LEADER_READY_TIMEOUT = 120.0

ServeWorker = Callable[[WorkerInfo], int]


@dataclass
class Slot:
    index: int
    pid: int = 0
    sock: socket.socket | None = None
    out: bytearray = field(default_factory=bytearray)
    inbuf: bytearray = field(default_factory=bytearray)
    deaths: list[float] = field(default_factory=list)
    restart_at: float = 0.0
    started: int = 0


class Supervisor:
    def __init__(
        self,
        count: int,
        serve: ServeWorker,
        shutdown_timeout: float,
        *,
        listener: socket.socket | None = None,
    ) -> None:
        self.count = count
        # The supervisor's copy of the listening socket (the workers inherit theirs): closed when a stop
        # begins, so once every worker has closed its copy new connections are refused, not queued.
        self.listener = listener
        self.serve = serve
        self.shutdown_timeout = shutdown_timeout
        self.shared = SharedState()
        self.setup_token = secrets.token_urlsafe(24)
        self.slots = [Slot(i) for i in range(count)]
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.failed = False
        self.leader_ready = False
        self.followers_started = False

    # -- processes --------------------------------------------------------------------------------

    def _fork(self, slot: Slot) -> None:
        parent_end, child_end = socket.socketpair()
        # What the supervisor imported stays shared with the workers: frozen objects are never touched
        # by the collector, so their pages are not copied into each worker.
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            gc.disable()  # until the worker's app is built (see `nekzus.server.collect_from_now_on`)
            try:
                parent_end.close()
                for other in self.slots:
                    if other.sock is not None:
                        other.sock.close()
                self.selector.close()
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                if slot.index:
                    # Reloads happen in the leader (followers follow it): a SIGHUP sent to the whole
                    # process group must not end a follower.
                    signal.signal(signal.SIGHUP, signal.SIG_IGN)
                info = WorkerInfo(
                    index=slot.index,
                    count=self.count,
                    # A leader that failed before it was ever ready (no follower forked yet) starts
                    # again as a first start: the crash repairs it did not finish run again.
                    restarted=slot.started > 0 and (self.leader_ready or self.followers_started),
                    shared=self.shared,
                    relay_socket=child_end,
                    setup_token=self.setup_token,
                )
                code = self.serve(info)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0
            except BaseException:
                log.exception("worker %d failed", slot.index)
            finally:
                logging.shutdown()
                os._exit(code)
        child_end.close()
        gc.enable()  # `nekzus.cli` turned collection off for the start-up
        parent_end.setblocking(False)
        slot.pid, slot.sock, slot.started = pid, parent_end, slot.started + 1
        slot.out.clear()
        slot.inbuf.clear()
        self.selector.register(parent_end, selectors.EVENT_READ, slot)
        log.info("worker %d started (pid %d)", slot.index, pid)

    def _close_relay(self, slot: Slot) -> None:
        if slot.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(slot.sock)
            slot.sock.close()
            slot.sock = None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for slot in self.slots:
                if slot.pid == pid:
                    self._died(slot, status)

    def _died(self, slot: Slot, status: int) -> None:
        slot.pid = 0
        self._close_relay(slot)
        if self.stopping:
            return
        now = time.monotonic()
        slot.deaths = [t for t in slot.deaths if now - t < RESTART_WINDOW] + [now]
        log.error("worker %d exited (%s)", slot.index, _describe(status))
        if len(slot.deaths) > MAX_RESTARTS:
            log.critical("worker %d keeps dying: stopping Nekzus", slot.index)
            self.failed = True
            self._stop()
            return
        delay = min(MAX_RESTART_DELAY, RESTART_DELAY * 2 ** (len(slot.deaths) - 1))
        slot.restart_at = now + delay

    # -- relay ------------------------------------------------------------------------------------

    def _readable(self, slot: Slot) -> None:
        assert slot.sock is not None
        try:
            chunk = slot.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close_relay(slot)
            return
        slot.inbuf += chunk
        try:
            frames = split_frames(slot.inbuf)
        except ValueError:
            log.error("worker %d sent a malformed relay frame", slot.index)
            self._close_relay(slot)
            return
        for raw in frames:
            if raw == READY:
                if slot.index == 0 and not self.leader_ready:
                    self.leader_ready = True
                continue
            for other in self.slots:
                if other is not slot and other.sock is not None:
                    if len(other.out) + len(raw) > MAX_BUFFERED:
                        log.warning("worker %d is not reading relayed events: dropping one", other.index)
                        continue
                    other.out += raw
                    self._write(other)

    def _write(self, slot: Slot) -> None:
        if slot.sock is None:
            slot.out.clear()
            return
        try:
            sent = slot.sock.send(slot.out) if slot.out else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            slot.out.clear()
            return
        del slot.out[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if slot.out else 0)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.modify(slot.sock, events, slot)

    # -- signals and the main loop ----------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            leader = self.slots[0].pid
            if leader:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leader, signal.SIGHUP)
            return
        self._stop()

    def _stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self.listener is not None:
            self.listener.close()
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGTERM)
        self.stop_deadline = time.monotonic() + self.shutdown_timeout + 3.0

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        log.info("starting %d workers", self.count)
        self._fork(self.slots[0])
        # Followers start once the leader is ready: it alone migrates the database at first start.
        leader_deadline = time.monotonic() + LEADER_READY_TIMEOUT
        while True:
            now = time.monotonic()
            if (
                not self.followers_started
                and (self.leader_ready or now > leader_deadline)
                and not self.stopping
            ):
                for slot in self.slots[1:]:
                    self._fork(slot)
                self.followers_started = True
            for key, mask in self.selector.select(timeout=0.2):
                slot = key.data
                if mask & selectors.EVENT_READ:
                    self._readable(slot)
                if mask & selectors.EVENT_WRITE and slot.sock is not None:
                    self._write(slot)
            self._reap()
            if self.stopping:
                if not any(slot.pid for slot in self.slots):
                    break
                if time.monotonic() > self.stop_deadline:
                    for slot in self.slots:
                        if slot.pid:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(slot.pid, signal.SIGKILL)
                continue
            for slot in self.slots:
                due = slot.pid == 0 and slot.restart_at and time.monotonic() >= slot.restart_at
                if due and (slot.index == 0 or self.followers_started):
                    slot.restart_at = 0.0
                    self._fork(slot)
        for slot in self.slots:
            self._close_relay(slot)
        log.info("all workers stopped")
        return 1 if self.failed else 0


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
