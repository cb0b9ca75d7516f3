"""GStreamer pipeline descriptions for every source kind and hardware preset (pure functions).

A pipeline is ``<source and decoder> ! <geometry> ! appsink`` (asked for a display size, a ``tee``
after the decoder also feeds a display branch, see :func:`display_chain`). The geometry chain crops
a centred region and scales it to the size the extractor asks for, in the preset's memory where it can:

* ``software``: ``decodebin``; ``videocrop`` + ``videoscale`` + ``videoconvert`` on the CPU;
* ``jetson``: ``nvv4l2decoder``; ``nvvidconv`` crops and scales in NVMM before the frame leaves it;
* ``nvidia``: ``decodebin`` (the nvcodec decoders outrank software ones) + ``cudaconvertscale``
  scales in CUDA memory, ``cudadownload``, then the (small) crop on the CPU.

The crop depends on the input size, which is known only once caps are negotiated: the element
named ``asl_in`` carries a probe (see :mod:`asl_edge.video.source`) that sets the crop of
``asl_crop`` and the caps of ``asl_scale`` from :class:`Geometry` before the first frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .scene import scene_description
from .uri import SourceSpec, VideoError, fps_fraction

PRESETS = ("software", "jetson", "nvidia")
DISPLAY_FPS = 15          # frame-rate cap of the display branch (the annotated video)
SINK_NAME = "asl_sink"
DISPLAY_NAME = "asl_display"

# element factory -> what provides it (named in "missing element" errors)
ELEMENT_PACKAGES = {
    "filesrc": "gstreamer1.0 (core)", "appsink": "gstreamer1.0-plugins-base",
    "decodebin": "gstreamer1.0-plugins-base", "parsebin": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base", "videoscale": "gstreamer1.0-plugins-base",
    "videotestsrc": "gstreamer1.0-plugins-base", "videorate": "gstreamer1.0-plugins-base",
    "compositor": "gstreamer1.0-plugins-base",
    "videocrop": "gstreamer1.0-plugins-good", "rtspsrc": "gstreamer1.0-plugins-good",
    "v4l2src": "gstreamer1.0-plugins-good", "jpegdec": "gstreamer1.0-plugins-good",
    "vp8dec": "gstreamer1.0-plugins-good", "avdec_h264": "gstreamer1.0-libav",
    "h264parse": "gstreamer1.0-plugins-bad", "cudaupload": "gstreamer1.0-plugins-bad (nvcodec, NVIDIA driver)",
    "cudaconvertscale": "gstreamer1.0-plugins-bad (nvcodec, NVIDIA driver)",
    "cudadownload": "gstreamer1.0-plugins-bad (nvcodec, NVIDIA driver)",
    "nvv4l2decoder": "JetPack (nvidia-l4t-gstreamer)", "nvvidconv": "JetPack (nvidia-l4t-gstreamer)",
    "nvarguscamerasrc": "JetPack (nvidia-l4t-gstreamer)",
    "tee": "gstreamer1.0 (core)", "queue": "gstreamer1.0 (core)", "filesink": "gstreamer1.0 (core)",
    "appsrc": "gstreamer1.0-plugins-base", "textoverlay": "gstreamer1.0-x (and fonts-dejavu-core)",
    "x264enc": "gstreamer1.0-plugins-ugly", "vp8enc": "gstreamer1.0-plugins-good",
    "mp4mux": "gstreamer1.0-plugins-good", "webmmux": "gstreamer1.0-plugins-good",
    "matroskamux": "gstreamer1.0-plugins-good",
}
# the elements whose presence selects a hardware preset
PRESET_ELEMENTS = {"jetson": ("nvv4l2decoder", "nvvidconv"), "nvidia": ("cudaupload", "cudaconvertscale",
                                                                         "cudadownload")}


@dataclass(frozen=True)
class Geometry:
    """Output frames of ``width`` x ``height``: the largest centred region of the input with that
    aspect ratio, shrunk to ``crop`` of its size, scaled to the output. I3D's recipe (short side
    256, centre crop 224) is ``Geometry(224, 224, 224 / 256)``. Sizes are in stored pixels: a
    pixel aspect ratio in the caps is not applied (as ffmpeg's scale and crop filters and the usual
    feature-extraction recipes do; containers and bitstreams often disagree on it anyway)."""

    width: int
    height: int
    crop: float = 1.0

    def __post_init__(self):
        if self.width < 1 or self.height < 1 or not 0 < self.crop <= 1:
            raise VideoError(f"bad output geometry {self.width}x{self.height}, crop {self.crop}: need positive "
                             "sizes and 0 < crop <= 1")

    def crop_box(self, in_width: int, in_height: int) -> Tuple[int, int, int, int]:
        """Pixels to remove (left, right, top, bottom) from an ``in_width`` x ``in_height`` frame."""
        target = self.width / self.height
        if in_width / in_height > target:                  # wider than the target: full height
            region_w, region_h = in_height * target, in_height
        else:
            region_w, region_h = in_width, in_width / target
        region_w = max(1, min(in_width, round(region_w * self.crop)))
        region_h = max(1, min(in_height, round(region_h * self.crop)))
        left, top = (in_width - region_w) // 2, (in_height - region_h) // 2
        return left, in_width - region_w - left, top, in_height - region_h - top

    def scaled_input(self, in_width: int, in_height: int) -> Tuple[int, int]:
        """Size to scale the whole input to so that its crop region becomes the output size."""
        left, right, top, bottom = self.crop_box(in_width, in_height)
        sx = self.width / (in_width - left - right)
        sy = self.height / (in_height - top - bottom)
        return max(self.width, round(in_width * sx)), max(self.height, round(in_height * sy))


def quote(value: str) -> str:
    """A property value quoted for a pipeline description."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def source_chain(spec: SourceSpec, preset: str, latency_ms: int = 200, tcp: bool = True) -> str:
    """Source and decoder part of the pipeline for ``spec`` under ``preset``. RTSP frames keep the
    sender's RTP timestamps (``buffer-mode=none``): re-timed by their arrival, frames that come late
    in a burst would run ahead of the real time of every later frame."""
    hw_decode = {"jetson": "parsebin ! nvv4l2decoder", "nvidia": "decodebin"}.get(preset, "decodebin")
    if spec.kind == "file":
        return f"filesrc location={quote(spec.location)} ! {hw_decode}"
    if spec.kind == "rtsp":
        protocols = " protocols=tcp" if tcp else ""
        return f"rtspsrc location={quote(spec.location)} latency={int(latency_ms)} buffer-mode=none{protocols} ! {hw_decode}"
    if spec.kind == "v4l2":
        return f"v4l2src device={quote(spec.location)} ! decodebin"
    if spec.kind == "test" and spec.location == "demo":
        return scene_description(spec)
    if spec.kind == "test":
        p = spec.params
        frames = f" num-buffers={int(p['frames'])}" if "frames" in p else ""
        fps = fps_fraction(p["fps"])
        live = "true" if spec.live else "false"
        return (f"videotestsrc pattern={spec.location} is-live={live}{frames} ! "
                f"video/x-raw,width={int(p['width'])},height={int(p['height'])},framerate={fps}")
    if spec.kind == "csi":
        if preset != "jetson":
            raise VideoError(f"csi://{spec.location} is a Jetson CSI camera (nvarguscamerasrc): it needs the jetson "
                             f"preset, and this machine uses {preset!r}")
        return f"nvarguscamerasrc sensor-id={int(spec.location)} ! video/x-raw(memory:NVMM)"
    if spec.kind == "gst":
        return spec.location
    raise VideoError(f"unknown source kind {spec.kind!r}")


def geometry_chain(geometry: Optional[Geometry], preset: str) -> str:
    """Crop/scale/convert part ending in RGB frames (``asl_in`` first, see the module docstring)."""
    rgb = "video/x-raw,format=RGB"
    if geometry is None:
        return f"videoconvert name=asl_in ! {rgb}"
    size = f"width={geometry.width},height={geometry.height}"
    if preset == "jetson":
        return (f"nvvidconv name=asl_in ! video/x-raw,format=RGBA,{size} ! videoconvert ! {rgb},{size}")
    if preset == "nvidia":
        return ("cudaupload name=asl_in ! cudaconvertscale ! capsfilter name=asl_scale "
                "caps=video/x-raw(memory:CUDAMemory) ! cudadownload ! videocrop name=asl_crop ! videoconvert ! "
                f"{rgb},{size}")
    return f"videocrop name=asl_in ! videoscale ! videoconvert ! {rgb},{size}"


def sink_chain(live: bool, realtime: bool, queue_size: int) -> str:
    """The appsink: a bounded queue, dropping the oldest buffers for live sources."""
    drop = "true" if live else "false"
    sync = "true" if realtime else "false"
    return (f"appsink name={SINK_NAME} emit-signals=true max-buffers={int(queue_size)} drop={drop} sync={sync} "
            "enable-last-sample=false")


def display_chain(size: Tuple[int, int], preset: str, live: bool, queue_size: int) -> str:
    """The display branch: RGB frames of ``size`` (width, height), letterboxed, at most
    ``DISPLAY_FPS`` per second (faster sources lose frames here, not in the reader), in an appsink that
    drops its oldest beyond ``queue_size`` and lets EOS through while it still holds frames, so a
    reader that falls behind loses display frames and never holds up the detection branch; behind
    a queue that is leaky for live sources (a file waits for the branch instead). Scaled on the CPU
    under every preset (the jetson preset copies the frames out of NVMM first)."""
    width, height = size
    leaky = "downstream" if live else "no"
    out_of_nvmm = "nvvidconv ! video/x-raw,format=RGBA ! " if preset == "jetson" else ""
    return (f"queue leaky={leaky} max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! {out_of_nvmm}"
            f"videorate drop-only=true max-rate={DISPLAY_FPS} ! videoscale ! "
            f"video/x-raw,width={int(width)},height={int(height)},pixel-aspect-ratio=1/1 ! videoconvert ! "
            f"video/x-raw,format=RGB ! appsink name={DISPLAY_NAME} max-buffers={int(queue_size)} drop=true sync=false "
            "wait-on-eos=false enable-last-sample=false")


def build_pipeline(spec: SourceSpec, geometry: Optional[Geometry], preset: str = "software", realtime: bool = False,
                   queue_size: int = 4, latency_ms: int = 200, tcp: bool = True,
                   display: Optional[Tuple[int, int]] = None) -> str:
    """The whole pipeline description for ``spec``; with ``display`` (width, height), a ``tee``
    after the decoder feeds a second branch, :func:`display_chain`, as well."""
    if preset not in PRESETS:
        raise VideoError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    detection = [geometry_chain(geometry, preset), sink_chain(spec.live, realtime, queue_size)]
    source = source_chain(spec, preset, latency_ms, tcp)
    if display is None:
        return " ! ".join([source, *detection])
    return " ! ".join([source, "tee name=asl_tee", "queue max-size-buffers=2 max-size-bytes=0 max-size-time=0",
                       *detection]) + " asl_tee. ! " + display_chain(display, preset, spec.live, 2 * queue_size + 8)


def element_names(description: str) -> List[str]:
    """Factory names in a pipeline description (caps, properties and ``name.pad`` links left out;
    a link that ends one branch may be followed by the element starting the next)."""
    names = []
    for part in re.split(r"\s!\s", description):
        tokens = part.split()
        while tokens and "." in tokens[0] and "=" not in tokens[0] and "/" not in tokens[0]:
            tokens.pop(0)
        token = tokens[0] if tokens else ""
        if token and not any(c in token for c in "/=.") and not token.startswith(("(", '"')):
            names.append(token)
    return names


def choose_preset(has_element) -> Tuple[str, Dict[str, bool]]:
    """The hardware preset whose elements ``has_element(name)`` finds (jetson, then nvidia), else
    software; and which elements of each preset were found."""
    found = {name: bool(has_element(name)) for names in PRESET_ELEMENTS.values() for name in names}
    for preset, names in PRESET_ELEMENTS.items():
        if all(found[n] for n in names):
            return preset, found
    return "software", found
