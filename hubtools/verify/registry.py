"""Imports every verifier module so that each registers its categories with ``base.register``.

``verifier_for`` imports this module first; a new verifier is one more import here.
"""

from __future__ import annotations

import hubtools.verify.code  # noqa: F401  (code: the sandboxed test runner)
import hubtools.verify.ifeval  # noqa: F401  (if)
import hubtools.verify.judge  # noqa: F401  (chat, general)
import hubtools.verify.math  # noqa: F401  (math)
import hubtools.verify.science  # noqa: F401  (science)
