"""Deprecated location: profiles are :mod:`csu_lib.study.profiles` (``from csu_lib.study import
run_config``). This module re-exports its former names and warns once on import."""
import warnings

from .study.profiles import PROFILES, Profile, get_profile, run_config

warnings.warn("csu_lib.profiles is deprecated: import run_config, get_profile from csu_lib.study",
              DeprecationWarning, stacklevel=2)

__all__ = ["PROFILES", "Profile", "get_profile", "run_config"]
