"""The MQTT contract (docs/asyncapi.yaml) as a checker: which channel a topic is, and what a payload breaks.

    from simulators.contract import Contract
    c = Contract()
    c.check("acs/s1/g1/events/access.granted", payload_bytes)  # -> [] or ["data.reason: ...", ...]

The document is the one source: channels give the topics (their `{site}`, `{gate}` and `{type}`
parameters match one topic level each), operations say which side sends, and each message's payload is
a JSON Schema (draft 7, as AsyncAPI 3.0 schemas are). An event topic names its type, and the message of
that name is the one checked. It imports nothing from `edge`: a peer of the gate, it checks the gate
against the document, not against shared code.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
MAX_MESSAGE = 1 << 20  # SPEC §2: nothing over 1 MiB is a message of the contract
_URI = "urn:gatekeeper:asyncapi"  # the document's id in the registry, so its `#/components/...` refs resolve
_PARAM = re.compile(r"\{([a-z_]+)\}")
_JSON_TYPES = ("application/json", "application/cloudevents+json")


class ContractError(ValueError):
    """A topic no channel of the document matches, or a document that does not hold together."""


@dataclass(frozen=True)
class Channel:
    name: str
    address: str
    pattern: re.Pattern
    literals: int  # topic levels that are not parameters: the more, the more specific the match
    messages: dict  # message key -> (message object, JSON pointer of its payload)
    gate_sends: bool  # an operation of the gate's side sends on it
    gate_receives: bool


class Contract:
    def __init__(self, path: Path | str = DOCUMENT, root: str = "acs"):
        self.path = Path(path)
        try:
            self.doc = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ContractError(f"cannot read {self.path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ContractError(f"{self.path} is not YAML: {e}") from None
        self.registry = Registry().with_resource(_URI, Resource.from_contents(self.doc, default_specification=DRAFT7))
        self.default_type = self.doc.get("defaultContentType", "application/json")
        sends, receives = set(), set()
        for op in self.doc.get("operations", {}).values():
            ch = self._pointer(op["channel"]["$ref"]).split("/")[-1]
            (sends if op["action"] == "send" else receives).add(ch)
        self.channels = []
        for name, ch in self.doc["channels"].items():
            address = ch["address"]
            if address.startswith("acs/"):
                address = root + address[3:]  # the topic root is configurable (SPEC §2)
            levels = address.split("/")
            regex = "/".join(f"(?P<{m.group(1)}>[^/#+]+)" if (m := _PARAM.fullmatch(lv)) else re.escape(lv)
                             for lv in levels)
            messages = {}
            for key, ref in ch.get("messages", {}).items():
                pointer = self._pointer(ref["$ref"]) if "$ref" in ref else f"/channels/{name}/messages/{key}"
                messages[key] = (self._resolve(pointer), pointer + "/payload")
            self.channels.append(Channel(name, address, re.compile(regex), sum(1 for lv in levels if not _PARAM.fullmatch(lv)),
                                         messages, name in sends, name in receives))
        self._validators: dict[str, Draft7Validator] = {}

    # -- the document ------------------------------------------------------------------------------
    @staticmethod
    def _pointer(ref: str) -> str:
        if not ref.startswith("#/"):
            raise ContractError(f"only references inside the document are used, not {ref!r}")
        return ref[1:]

    def _resolve(self, pointer: str):
        node = self.doc
        for part in pointer.strip("/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                node = node[part]
            except (KeyError, TypeError):
                raise ContractError(f"{self.path.name}: #{pointer} does not exist") from None
        return node

    def _validator(self, pointer: str) -> Draft7Validator:
        v = self._validators.get(pointer)
        if v is None:
            v = self._validators[pointer] = Draft7Validator({"$ref": f"{_URI}#{pointer}"}, registry=self.registry)
        return v

    def event_types(self) -> set[str]:
        """The event types the document describes (the messages of the events channel)."""
        return {m["name"] for ch in self.channels if "type" in ch.pattern.groupindex for m, _ in ch.messages.values()}

    # -- topics --------------------------------------------------------------------------------------
    def channel(self, topic: str) -> tuple[Channel, dict[str, str]]:
        """The channel a topic belongs to and its parameters; ContractError when none matches."""
        found = [(ch, m.groupdict()) for ch in self.channels if (m := ch.pattern.fullmatch(topic))]
        if not found:
            raise ContractError(f"topic {topic!r} matches no channel of {self.path.name}")
        return max(found, key=lambda f: f[0].literals)

    def message(self, topic: str) -> tuple[Channel, dict, str]:
        """The channel, the message object and the JSON pointer of its payload schema for a topic."""
        ch, params = self.channel(topic)
        if "type" in params:  # an event topic names its type: the message of that name
            for msg, pointer in ch.messages.values():
                if msg.get("name") == params["type"]:
                    return ch, msg, pointer
            raise ContractError(f"topic {topic!r}: event type {params['type']!r} has no message in {self.path.name}")
        if len(ch.messages) != 1:
            raise ContractError(f"channel {ch.name} has {len(ch.messages)} messages: the topic does not say which")
        msg, pointer = next(iter(ch.messages.values()))
        return ch, msg, pointer

    def gate_sends(self, topic: str) -> bool:
        """Whether a gate publishes on this topic (False for a topic of no channel)."""
        try:
            return self.channel(topic)[0].gate_sends
        except ContractError:
            return False

    # -- payloads ------------------------------------------------------------------------------------
    def check(self, topic: str, payload: bytes) -> list[str]:
        """What this payload on this topic breaks of the contract, one line each; [] when it conforms.
        Raises ContractError for a topic of no channel."""
        ch, msg, pointer = self.message(topic)
        if len(payload) > MAX_MESSAGE:
            return [f"{len(payload)} bytes, over {MAX_MESSAGE}"]
        ctype = msg.get("contentType", self.default_type)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as e:
            return [f"not UTF-8: {e}"]
        if ctype in _JSON_TYPES:
            try:
                value = json.loads(text)
            except ValueError as e:
                return [f"not JSON: {e}"]
        else:
            value = text
        problems = [_describe(e) for e in sorted(self._validator(pointer).iter_errors(value),
                                                 key=lambda e: list(e.absolute_path))]
        if "type" in ch.pattern.groupindex and isinstance(value, dict):
            source = topic.rsplit("/events/", 1)[0]
            if value.get("source") != source:
                problems.append(f"source: {value.get('source')!r} is not the topic's {source!r}")
        return problems


def _describe(e: ValidationError) -> str:
    """One violation in words: where (a dotted path into the payload) and what."""
    if e.context:  # oneOf/anyOf/allOf: the branch that came closest says more than "not valid under any"
        inner = best_match(e.context)
        if inner is not None and inner.validator != e.validator:
            return _describe(inner)
    where = ".".join(str(p) for p in e.absolute_path) or "(message)"
    if e.validator == "not" and isinstance(e.instance, dict):
        names = [n for sub in e.validator_value.get("anyOf", []) for n in sub.get("required", []) if n in e.instance]
        if names:
            return f"{where}: {', '.join(names)}: a retired name (SPEC §2: the person who acted is actor, with actor_role)"
    text = e.message if len(e.message) <= 200 else e.message[:200] + "..."
    return f"{where}: {text}"
