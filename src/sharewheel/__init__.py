"""sharewheel: share native libraries between wheels instead of vendoring a copy into each."""

__version__ = "0.1.0"
