"""Teachers: incremental distillation from TGI, vLLM and SGLang endpoints."""

from hubtools.teachers.config import GenerateConfig, Sampling, TeacherConfig
from hubtools.teachers.generate import generate, generate_shard, parse_shard

__all__ = ["GenerateConfig", "Sampling", "TeacherConfig", "generate", "generate_shard",
           "parse_shard"]  # fmt: skip
