"""What an endpoint failure means for the request: retry, record, or stop the teacher.

Transient overload and transport trouble (429, 503, other 5xx, timeouts,
resets, error events inside a 200 stream) are retried with exponential
backoff and full jitter, honouring Retry-After. A 4xx about the request
itself (422 validation, 400) is recorded as the attempt's error and not
retried: asking again gets the same answer. Auth and routing errors (401,
403, 404) mean the config is wrong, so the teacher stops and says so.

The rules live in `hubtools.endpoints`, shared with score's remote backends (a stage
does not import another stage); this module keeps the teachers' names for them.
"""

from __future__ import annotations

from hubtools.endpoints import REJECT, RETRY, STOP, Failure, backoff_delay, classify

__all__ = ["REJECT", "RETRY", "STOP", "Failure", "backoff_delay", "classify"]
