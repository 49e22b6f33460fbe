"""A Cyclone DDS participant bound to one network interface and domain, with writers and latest-sample readers.

Configured the way Unitree's SDKs configure Cyclone DDS (one `NetworkInterface` by name, default QoS: reliable
writers, best-effort readers, keep last 1), so a peer built on them finds these endpoints. A domain's
configuration is process-wide in Cyclone DDS: the first link on a domain id sets its interface, and later links
on that id in the same process share it (asking for another interface there is an error).
"""
from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from twin_kit import InputError

_CONFIG = ('<CycloneDDS><Domain Id="any"><General><Interfaces><NetworkInterface name="{interface}" '
           'priority="default" multicast="default"/></Interfaces></General>'
           '<Tracing><OutputFile>/dev/null</OutputFile></Tracing></Domain></CycloneDDS>')
MAX_DOMAIN = 232                 # the highest id whose ports fit the RTPS port mapping
_domains: dict[int, tuple[str, object]] = {}   # domain id -> (interface, cyclonedds Domain): Cyclone's own state
_domains_lock = threading.Lock()


def check_interface(interface: str) -> None:
    """Refuse a network interface this machine does not have, listing the ones it has."""
    names = [n for _, n in socket.if_nameindex()]
    if interface not in names:
        raise InputError(f"--interface {interface}: no such network interface (here: {', '.join(names)})")


def _domain(domain: int, interface: str):
    from cyclonedds.domain import Domain

    if not 0 <= domain <= MAX_DOMAIN:
        raise InputError(f"--domain {domain}: DDS domain ids run from 0 to {MAX_DOMAIN}")
    check_interface(interface)
    with _domains_lock:
        if domain in _domains:
            have, dom = _domains[domain]
            if have != interface:
                raise InputError(f"DDS domain {domain} is already bound to {have} in this process; "
                                 f"use another domain id for {interface}")
            return dom
        dom = Domain(domain, _CONFIG.format(interface=interface))
        _domains[domain] = (interface, dom)
        return dom


class DdsLink:
    """One participant on `interface` and `domain`: `writer(topic, type)` and `reader(topic, type, callback)`.

    A reader's callback gets each valid sample on the link's receive thread for that reader (keep it short)."""

    def __init__(self, interface: str = "lo", domain: int = 1):
        from cyclonedds.domain import DomainParticipant

        self.interface, self.domain = interface, domain
        self._domain = _domain(domain, interface)
        self.participant = DomainParticipant(domain)
        self._entities: list = []
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()

    def _topic(self, name: str, data_type):
        from cyclonedds.topic import Topic

        topic = Topic(self.participant, name, data_type)
        self._entities.append(topic)
        return topic

    def writer(self, topic: str, data_type):
        """A DataWriter of `data_type` samples on `topic` (default QoS, as Unitree's SDKs use)."""
        from cyclonedds.pub import DataWriter

        w = DataWriter(self.participant, self._topic(topic, data_type))
        self._entities.append(w)
        return w

    def reader(self, topic: str, data_type, on_sample: Callable[[object], None]):
        """A DataReader of `topic` calling `on_sample(sample)` for every valid sample as it arrives, from a thread
        of this link's own. (Not a Cyclone listener: a Python callback on Cyclone's receive thread deadlocks with
        a reader being deleted on another thread, seen at close under load.)"""
        from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState, WaitSet
        from cyclonedds.sub import DataReader

        r = DataReader(self.participant, self._topic(topic, data_type))
        cond = ReadCondition(r, SampleState.NotRead | ViewState.Any | InstanceState.Any)
        waits = WaitSet(self.participant)
        waits.attach(cond)
        self._entities += [r, cond, waits]
        t = threading.Thread(target=self._receive, args=(r, waits, on_sample), name=f"dds-{topic}", daemon=True)
        self._threads.append(t)
        t.start()
        return r

    def _receive(self, reader, waits, on_sample) -> None:
        """Wait for samples (waking every 50 ms to see whether the link closed) and hand each valid one over."""
        from cyclonedds.internal import InvalidSample

        while not self._closed.is_set():
            if waits.wait(50_000_000) <= 0:   # ns; 0: timed out
                continue
            if self._closed.is_set():
                return
            for s in reader.take(N=64):
                if not isinstance(s, InvalidSample):   # an unregistered/disposed instance carries no data
                    on_sample(s)

    def close(self) -> None:
        """Stop the receive threads, then release the participant and every writer, reader and topic made through
        this link (Cyclone deletes an entity when its last Python reference goes: callers drop the writers and
        readers they kept too)."""
        self._closed.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2.0)
        self._threads.clear()
        self._entities.clear()
        self.participant = None
