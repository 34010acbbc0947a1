from ragtune.models.encoder import Encoder, resolve_model_path

__all__ = ["Encoder", "resolve_model_path"]
