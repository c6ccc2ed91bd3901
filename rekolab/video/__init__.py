"""Video input: resolve a ``Video`` request to a file, probe it, decode sampled frames."""
from .decode import (DEFAULT_SAMPLE_RATE, check_decodable, DecodePlan, FrameBatch, VideoDecodeError, VideoMetadata,
                     iter_batches, plan, probe, sample_indices)
from .container import MIN_FRAME_SIDE
from .source import ResolvedVideo, parse_buckets, resolve_video

__all__ = ["DEFAULT_SAMPLE_RATE", "DecodePlan", "FrameBatch", "VideoDecodeError", "VideoMetadata",
           "iter_batches", "plan", "probe", "sample_indices", "ResolvedVideo", "parse_buckets",
           "resolve_video", "MIN_FRAME_SIDE", "check_decodable"]
