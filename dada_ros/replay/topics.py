"""Which bag topic feeds which input of the node, and clear errors when the bag lacks one.

Inputs are named like the node's topics (relative names, resolved in the root namespace):

=========  ==========================  =============================
key        default topic               type
=========  ==========================  =============================
rgb        /rgb/image_rect_color       sensor_msgs/msg/Image
rgb_info   /rgb/camera_info            sensor_msgs/msg/CameraInfo
depth      /depth/image_rect           sensor_msgs/msg/Image
gt         /depth_gt/image_rect        sensor_msgs/msg/Image (optional: no ground truth, no scores)
=========  ==========================  =============================

Remaps: ``rgb=/camera/color/image_raw,depth=/tof/depth/image_raw`` (``gt=`` or ``gt=none``
turns scoring off).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..core.errors import DadaInputError
from ..ros.names import INPUT_TOPICS, OUTPUT_TOPICS, absolute
from .bag import TopicInfo

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
INPUT_KEYS = ("rgb", "rgb_info", "depth", "gt")
EXPECTED_TYPES = {"rgb": IMAGE, "rgb_info": CAMERA_INFO, "depth": IMAGE, "gt": IMAGE}

# Output topics (the node's, under the root namespace).
OUT_DEPTH = absolute(OUTPUT_TOPICS["depth"])
OUT_INFO = absolute(OUTPUT_TOPICS["camera_info"])
OUT_POINTS = absolute(OUTPUT_TOPICS["points"])


@dataclass(frozen=True)
class TopicMap:
    """Bag topic for each input; ``gt`` is None when scoring is off."""

    rgb: str = absolute(INPUT_TOPICS["rgb"])
    rgb_info: str = absolute(INPUT_TOPICS["camera_info"])
    depth: str = absolute(INPUT_TOPICS["depth"])
    gt: str | None = "/depth_gt/image_rect"
    notes: tuple[str, ...] = field(default=(), compare=False)

    def inputs(self) -> list[str]:
        """Topics of the node's three synchronised inputs, in the node's input order."""
        return [self.rgb, self.rgb_info, self.depth]

    def with_remaps(self, spec: str | None) -> "TopicMap":
        """Apply ``key=topic[,key=topic...]`` remaps (keys: rgb, rgb_info, depth, gt)."""
        if not spec:
            return self
        values: dict[str, str | None] = {}
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, topic = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in INPUT_KEYS:
                raise DadaInputError(f"bad topic remap {item!r}; expected KEY=TOPIC with KEY one of {', '.join(INPUT_KEYS)}")
            topic = topic.strip()
            if key == "gt" and topic.lower() in ("", "none"):
                values[key] = None
            elif not topic:
                raise DadaInputError(f"topic remap {item!r} has an empty topic")
            else:
                values[key] = absolute(topic)
        return replace(self, **values)

    def resolve(self, bag_topics: dict[str, TopicInfo]) -> "TopicMap":
        """Check the bag against this map; missing ground truth only drops scoring (a note).

        Raises:
            DadaInputError: an input topic is missing (the message lists what the bag has) or
                has a message type the node cannot take.
        """
        notes = list(self.notes)
        missing = [(k, getattr(self, k)) for k in ("rgb", "rgb_info", "depth") if getattr(self, k) not in bag_topics]
        if missing:
            want = ", ".join(f"{k}={t}" for k, t in missing)
            raise DadaInputError(f"bag lacks input topic(s) {want}; it has: {describe(bag_topics)}; "
                                 "remap with --topics KEY=TOPIC")
        for key in ("rgb", "rgb_info", "depth"):
            _check_type(key, bag_topics[getattr(self, key)])
        gt = self.gt
        if gt is not None and gt not in bag_topics:
            notes.append(f"no ground truth: the bag has no {gt} topic, so nothing is scored "
                         "(only frames, iterations and timing are reported)")
            gt = None
        elif gt is not None:
            _check_type("gt", bag_topics[gt])
        elif not any("ground truth" in n for n in notes):
            notes.append("ground truth turned off: nothing is scored")
        return replace(self, gt=gt, notes=tuple(notes))


def _check_type(key: str, info: TopicInfo) -> None:
    want = EXPECTED_TYPES[key]
    if info.msgtype != want:
        hint = " (republish it raw, e.g. with image_transport republish)" if "Compressed" in info.msgtype else ""
        raise DadaInputError(f"unsupported message type on {info.name}: {info.msgtype}; the {key} input needs {want}{hint}")


def describe(bag_topics: dict[str, TopicInfo]) -> str:
    """One-line list of a bag's topics with type and count."""
    if not bag_topics:
        return "no topics at all"
    return "; ".join(f"{t.name} [{t.msgtype.replace('/msg/', '/')}] x{t.count}" for t in sorted(bag_topics.values(), key=lambda t: t.name))
