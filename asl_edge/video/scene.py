"""The built-in demo scene, ``test://demo?seed=N``: a live video of scripted actions, rendered by
GStreamer at run time (no video files).

A seed gives a :class:`SceneScript`: actions of :data:`SCENE_CLASSES` at scripted times, each by
its own actor (a ``videotestsrc`` square with the class's colour, a ``compositor`` input), and
background activity that is no action (a grey square drifting all the time, patches of
``videotestsrc`` snow flickering now and then, sometimes during an action). The script drives
the actors' ``compositor`` pad properties (position, size, alpha) through GstController control
sources with one value per output frame, so the compositor draws each frame exactly as the
script says, at any frame rate, live or as fast as it is read. The script is also the scene's
ground truth (:meth:`SceneScript.annotations`).

It is a toy world that shows the pipeline working end to end, not a model of human actions:

| class | actor | what it does |
|---|---|---|
| ``wave`` | red square | swings left and right around its place |
| ``jump`` | green square | hops up and down |
| ``blink`` | blue square | flashes on and off |
| ``cross`` | yellow bar | crosses the frame at a steady pace |
| ``grow`` | magenta square | swells from a dot and shrinks back |
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from .uri import SourceSpec, VideoError, fps_fraction

SCENE_CLASSES = ("wave", "jump", "blink", "cross", "grow")
# ARGB colours of the actors, and of the background and the drifting distractor
COLOURS = {"wave": 0xFFE03C28, "jump": 0xFF2EC24A, "blink": 0xFF2F6BF0, "cross": 0xFFF2D230, "grow": 0xFFD23CD2}
BACKGROUND = 0xFF283038
DRIFTER = 0xFF8C8C8C
# sizes as fractions of the frame height (the scene is laid out for 4:3; other shapes stretch)
ACTOR_SIZE = 0.18
DURATION_S = (1.5, 6.0)          # an action's length
GAP_S = (0.2, 4.0)               # time between one action's end and the next one's start
SNOW_EVERY_S = 7.0               # mean time between snow flickers
SCENE_DEFAULTS = {"seed": 0.0, "seconds": 60.0, "fps": 30.0, "width": 320.0, "height": 240.0, "live": 1.0}


@dataclass(frozen=True)
class SceneAction:
    """One action: ``label`` from ``start`` to ``end`` seconds at ``(x, y)`` (the actor's centre,
    fractions of the frame); ``direction`` +1/-1 (which way ``cross`` goes)."""

    label: str
    start: float
    end: float
    x: float
    y: float
    direction: int = 1


@dataclass(frozen=True)
class Flicker:
    """A patch of snow at ``(x, y)`` from ``start`` to ``end`` seconds: background activity."""

    start: float
    end: float
    x: float
    y: float


@dataclass(frozen=True)
class SceneScript:
    """What happens in the scene of ``seed``: actions in time order, snow flickers, and the path of
    the drifting square (``drift``: (x0, y0, vx, vy) in frame fractions and fractions per second,
    bouncing off the edges)."""

    seed: int
    seconds: float
    actions: Tuple[SceneAction, ...]
    flickers: Tuple[Flicker, ...]
    drift: Tuple[float, float, float, float]

    def annotations(self) -> List[Dict]:
        """Ground truth in ActionFormer's annotation layout (label, segment, label_id)."""
        return [{"label": a.label, "segment": [round(a.start, 4), round(a.end, 4)],
                 "label_id": SCENE_CLASSES.index(a.label)} for a in self.actions]


def make_script(seed: int, seconds: float = 60.0) -> SceneScript:
    """The script of scene ``seed``: deterministic for a seed (and ``seconds``)."""
    if seconds <= 0:
        raise VideoError(f"a demo scene needs a positive length, got {seconds} s")
    rng = np.random.default_rng([int(seed), 20261127])
    actions: List[SceneAction] = []
    t = float(rng.uniform(0.5, 3.0))
    while True:
        length = float(rng.uniform(*DURATION_S))
        if t + length > seconds - 0.5:
            break
        label = SCENE_CLASSES[int(rng.integers(len(SCENE_CLASSES)))]
        direction = 1 if rng.random() < 0.5 else -1
        actions.append(SceneAction(label, round(t, 3), round(t + length, 3), float(rng.uniform(0.25, 0.75)),
                                   float(rng.uniform(0.3, 0.7)), direction))
        gap = GAP_S[0] if rng.random() < 0.25 else float(rng.uniform(*GAP_S))   # some actions close together
        t += length + gap
    flickers = []
    t = float(rng.exponential(SNOW_EVERY_S))
    while t < seconds - 0.5:
        length = float(rng.uniform(0.4, 1.5))
        flickers.append(Flicker(round(t, 3), round(min(t + length, seconds), 3), float(rng.uniform(0.1, 0.9)),
                                float(rng.uniform(0.15, 0.85))))
        t += length + float(rng.exponential(SNOW_EVERY_S))
    drift = (float(rng.uniform(0.1, 0.9)), float(rng.uniform(0.1, 0.9)), float(rng.uniform(-0.04, 0.04)),
             float(rng.uniform(-0.03, 0.03)))
    return SceneScript(int(seed), float(seconds), tuple(actions), tuple(flickers), drift)


# ------------------------------------------------------------------------------- actor motion
def _bounce(position: np.ndarray) -> np.ndarray:
    """Fold positions onto [0, 1] as a ball bouncing between walls."""
    folded = np.mod(position, 2.0)
    return np.where(folded > 1.0, 2.0 - folded, folded)


def actor_tracks(script: SceneScript, times: np.ndarray) -> Dict[str, Dict[str, np.ndarray]]:
    """Per actor (each class, ``drifter``, ``snow``): centre ``x``, ``y``, ``size`` (frame-height
    fractions; ``cross`` is wider than high) and ``alpha`` at ``times`` (seconds)."""
    n = len(times)
    tracks = {name: {"x": np.full(n, 0.5), "y": np.full(n, 0.5), "size": np.full(n, ACTOR_SIZE),
                     "alpha": np.zeros(n)} for name in (*SCENE_CLASSES, "snow")}
    for a in script.actions:
        inside = (times >= a.start) & (times < a.end)
        tau = times[inside] - a.start                      # seconds into the action
        progress = tau / (a.end - a.start)
        track = tracks[a.label]
        track["alpha"][inside] = 1.0
        track["x"][inside], track["y"][inside] = a.x, a.y
        if a.label == "wave":
            track["x"][inside] = a.x + 0.12 * np.sin(2 * math.pi * 1.2 * tau)
        elif a.label == "jump":
            track["y"][inside] = a.y - 0.2 * np.abs(np.sin(math.pi * 1.0 * tau))
        elif a.label == "blink":
            track["alpha"][inside] = (np.floor(tau * 6.0) % 2 == 0).astype(float)
        elif a.label == "cross":
            edge = 0.08
            start, end = (edge, 1 - edge) if a.direction > 0 else (1 - edge, edge)
            track["x"][inside] = start + (end - start) * progress
        elif a.label == "grow":
            track["size"][inside] = 0.04 + 0.3 * np.sin(math.pi * progress)
    snow = tracks["snow"]
    snow["size"][:] = 0.22
    for f in script.flickers:
        inside = (times >= f.start) & (times < f.end)
        snow["alpha"][inside], snow["x"][inside], snow["y"][inside] = 1.0, f.x, f.y
    x0, y0, vx, vy = script.drift
    tracks["drifter"] = {"x": _bounce(x0 + vx * times), "y": _bounce(y0 + vy * times), "size": np.full(n, 0.12),
                         "alpha": np.ones(n)}
    return tracks


# ----------------------------------------------------------------------------- GStreamer side
ACTORS = ("drifter", "snow", *SCENE_CLASSES)        # compositor inputs 1.., in drawing order
COMPOSITOR = "asl_scene"


def scene_params(spec: SourceSpec) -> Dict[str, float]:
    """The scene options of a ``test://demo`` spec, defaults filled in."""
    return {**SCENE_DEFAULTS, **spec.params}


def _actor_source(name: str, fps: str, frames: str, live: str) -> str:
    pattern = "pattern=snow" if name == "snow" else \
        f"pattern=solid-color foreground-color={DRIFTER if name == 'drifter' else COLOURS[name]}"
    return f"videotestsrc {pattern} is-live={live}{frames} ! video/x-raw,format=AYUV,width=8,height=8,framerate={fps}"


def scene_description(spec: SourceSpec) -> str:
    """The source part of the pipeline: a background and one input per actor into a compositor."""
    p = scene_params(spec)
    fps, live = fps_fraction(p["fps"]), "true" if p["live"] else "false"
    frames = f" num-buffers={max(1, round(p['seconds'] * p['fps']))}"
    width, height = int(p["width"]), int(p["height"])
    parts = [f"compositor name={COMPOSITOR} background=black ! video/x-raw,format=AYUV,width={width},height={height},"
             f"framerate={fps}",
             f"videotestsrc pattern=solid-color foreground-color={BACKGROUND} is-live={live}{frames} ! "
             f"video/x-raw,format=AYUV,width={width},height={height},framerate={fps} ! {COMPOSITOR}.sink_0"]
    for i, name in enumerate(ACTORS, 1):
        parts.append(f"{_actor_source(name, fps, frames, live)} ! {COMPOSITOR}.sink_{i}")
    return " ".join(parts[1:]) + " " + parts[0]


def animate(pipeline, spec: SourceSpec) -> SceneScript:
    """Attach the script of ``spec`` to the compositor's pads of a built ``pipeline``: one step
    keyframe per frame where a property changes. Returns the script."""
    import gi

    gi.require_version("GstController", "1.0")
    from gi.repository import Gst, GstController

    p = scene_params(spec)
    script = make_script(int(p["seed"]), p["seconds"])
    width, height, fps = int(p["width"]), int(p["height"]), p["fps"]
    times = np.arange(max(1, round(p["seconds"] * fps)) + 1) / fps
    # each frame's values from half a frame before its time: the compositor's frame times are
    # rounded to the nanosecond, and must never fall just before their own keyframe
    stamps = np.maximum(0, np.round((times - 0.5 / fps) * Gst.SECOND)).astype(np.int64)
    compositor = pipeline.get_by_name(COMPOSITOR)
    tracks = actor_tracks(script, times)
    for i, name in enumerate(ACTORS, 1):
        track = tracks[name]
        pad = compositor.get_static_pad(f"sink_{i}")
        side = np.maximum(2, np.round(track["size"] * height)).astype(np.int64)
        aspect = 1.6 if name == "cross" else 1.0
        w = np.maximum(2, np.round(side * aspect)).astype(np.int64)
        values = {"width": w, "height": side,
                  "xpos": np.round(track["x"] * width - w / 2).astype(np.int64),
                  "ypos": np.round(track["y"] * height - side / 2).astype(np.int64),
                  "alpha": track["alpha"]}
        for prop, series in values.items():
            _keyframes(pad, prop, stamps, series, GstController)
    return script


def _keyframes(pad, prop: str, stamps: np.ndarray, series: np.ndarray, GstController) -> None:
    """Step keyframes for ``prop`` of ``pad`` wherever ``series`` changes."""
    source = GstController.InterpolationControlSource()
    source.set_property("mode", GstController.InterpolationMode.NONE)
    pad.add_control_binding(GstController.DirectControlBinding.new_absolute(pad, prop, source))
    changes = np.flatnonzero(np.r_[True, series[1:] != series[:-1]])
    for k in changes:
        source.set(int(stamps[k]), float(series[k]))


def is_scene(spec: Optional[SourceSpec]) -> bool:
    """Whether ``spec`` is the built-in demo scene."""
    return spec is not None and spec.kind == "test" and spec.location == "demo"
