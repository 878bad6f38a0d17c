"""edgeHub's routing: every module's outputs, along the deployment's routes, to module inputs or `$upstream`.

Per module broker one Link subscribed to that module's outputs. Each message becomes a `routes.Message`
(properties without `$.on`, whose value is the output name; the edge device as its connection's device),
goes to each distinct destination once, and is forwarded at QoS 1 to the target's input topic on the
target's broker, with `$.mid`, `$.cid`, `$.ct`, `$.ce` and custom properties kept, `$.on` stripped, and
`$.cdid` (device) and `$.cmid` (source module) added as edgeHub does. One source is handled on one thread
in arrival order, so per-source order holds.

Module names as edgeHub compares them (edgekit.routes.deployed_module): a route's source matches the sending
module in any case (`/messages/modules/turboFanRouter/*` reads `turbofanRouter`); a sink's module is the
module of exactly that name, else nothing is delivered (edgeHub keeps such messages for a module that never
connects; load_deployment refuses such a route before anything starts).

Store-and-forward (with `store_dir`): each target module's messages go through a Forwarder, which stores them on
disk while the module is down and hands them over when it is back, within the TTL of the route that carried them
(`timeToLiveSecs`, else `$edgeHub`'s storeAndForwardConfiguration.timeToLiveSecs); see localedge/forwarder.py.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgekit.routes import Message, ModuleInput, Route, destinations
from localedge.broker import Broker
from localedge.forwarder import Forwarder
from localedge.link import Link
from localedge.store import MessageStore
from localedge.upstream import KEEP, UpstreamRecorder
from localedge.wire import EdgeMessage, input_topic, outputs_filter

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 7200  # edgeHub's storeAndForwardConfiguration.timeToLiveSecs when the manifest sets none


def forwarded_properties(properties: Mapping[str, str], device_id: str, source: str) -> dict[str, str]:
    """What edgeHub passes on: everything but `$.on`, plus the connection's device and module ids."""
    props = {k: v for k, v in properties.items() if k not in ("$.on", "$.cdid", "$.cmid")}
    props["$.cdid"], props["$.cmid"] = device_id, source
    return props


class Hub:
    """Routes between the modules' brokers; `$upstream` goes to `upstream`."""

    def __init__(
        self,
        device_id: str,
        routes: Sequence[Route],
        brokers: Mapping[str, Broker],
        upstream: UpstreamRecorder,
        *,
        store_dir: Path | None = None,
        default_ttl_s: int = DEFAULT_TTL_S,
        accepting: Callable[[str], bool] = lambda _module: True,
    ) -> None:
        self.device_id = device_id
        self.routes = list(routes)
        self.store_dir = store_dir
        self.accepting = accepting  # module -> whether it can take messages now (else they are stored)
        self.ttl_s: dict[ModuleInput, int] = sink_ttls(self.routes, default_ttl_s)
        self.forwarders: dict[str, Forwarder] = {}
        self.brokers = dict(brokers)
        self.upstream = upstream
        self.links: dict[str, Link] = {}
        self._lock = threading.Lock()
        self.received: collections.Counter[str] = collections.Counter()  # per source module
        self.forwarded: collections.Counter[str] = collections.Counter()  # per target module
        self.dropped: collections.Counter[str] = collections.Counter()  # per reason
        self.sent_ids: dict[str, collections.deque[str]] = {}  # per source: recent message ids, in order
        self._changed = threading.Condition(self._lock)

    def start(self, timeout: float = 10.0) -> Hub:
        for module, broker in self.brokers.items():
            self.sent_ids[module] = collections.deque(maxlen=KEEP)
            link = Link(broker, f"localedge-hub-{module}", lambda msg, at, m=module: self._route(m, msg, at))
            self.links[module] = link.connect(timeout)
            link.subscribe(outputs_filter(self.device_id, module), timeout)
            if self.store_dir is not None:
                store = MessageStore(self.store_dir / module / "messages.bin")
                self.forwarders[module] = Forwarder(module, link, store, lambda m=module: self.accepting(m)).start()
        return self

    def _route(self, source: str, msg: EdgeMessage, at: float) -> None:
        output = msg.properties.get("$.on", "")
        properties = {k: v for k, v in msg.properties.items() if k != "$.on"}
        message = Message(source, output, msg.body, properties, device_id=self.device_id)
        props = forwarded_properties(msg.properties, self.device_id, source)
        sinks = destinations(self.routes, message)
        if any(isinstance(s, ModuleInput) for s in sinks) and msg.message_id:
            self.upstream.seen(msg.message_id, at)
        for sink in sinks:
            if not isinstance(sink, ModuleInput):
                self.upstream.record(source, output, props, msg.body, at)
            elif (link := self.links.get(sink.module)) is None:
                self._count(self.dropped, f"{sink.module} is not running")
            else:
                topic = input_topic(self.device_id, sink.module, sink.input, props)
                if (forwarder := self.forwarders.get(sink.module)) is not None:
                    forwarder.send(topic, msg.body, self.ttl_s.get(sink, DEFAULT_TTL_S))
                else:
                    link.publish(topic, msg.body)
                self._count(self.forwarded, sink.module)
        if not sinks:
            self._count(self.dropped, f"no route from {source}/{output or '(no output)'}")
        with self._lock:
            self.received[source] += 1
            if msg.message_id:
                self.sent_ids[source].append(msg.message_id)
            self._changed.notify_all()

    def _count(self, counter: collections.Counter[str], key: str) -> None:
        with self._lock:
            counter[key] += 1

    def wait_received(self, source: str, count: int, timeout: float) -> bool:
        """True once `count` messages from `source` have been routed."""
        with self._changed:
            return self._changed.wait_for(lambda: self.received[source] >= count, timeout)

    def message_ids(self, source: str) -> list[str]:
        with self._lock:
            return list(self.sent_ids.get(source, ()))

    def flush(self, timeout: float = 10.0) -> None:
        """Return once every broker has taken everything forwarded so far (a barrier on each link)."""
        for link in self.links.values():
            link.barrier(timeout)

    def store_counts(self) -> dict[str, dict[str, Any]]:
        """Per target module: stored, delivered from the store, expired (past their TTL) and still pending."""
        return {module: f.counts() for module, f in self.forwarders.items()}

    def stop(self) -> None:
        for forwarder in self.forwarders.values():
            forwarder.stop()
        for link in self.links.values():
            link.close()
        self.links.clear()


def sink_ttls(routes: Sequence[Route], default_ttl_s: int) -> dict[ModuleInput, int]:
    """Each module-input sink's TTL: its routes' `timeToLiveSecs` (0: the hub's default); the longest where
    several routes reach one sink (the local hub delivers a message to a sink once)."""
    ttls: dict[ModuleInput, int] = {}
    for route in routes:
        if isinstance(route.sink, ModuleInput):
            ttl = route.time_to_live_secs or default_ttl_s
            ttls[route.sink] = max(ttl, ttls.get(route.sink, 0))
    return ttls
