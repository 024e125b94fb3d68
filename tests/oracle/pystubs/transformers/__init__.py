"""Stand-in for Hugging Face `transformers`, which Debian 12 does not package.

llama.cpp's converter imports `transformers.AutoConfig` at module level and calls
`AutoConfig.from_pretrained`; when that raises it reads config.json itself. So every
entry point here raises, which sends the converter down its config.json path. Only the
Llama/Mistral/Mixtral SentencePiece path is used by smelt's tests; code paths that really
need transformers (BPE tokenizers via AutoTokenizer) fail loudly instead of silently.
This file is smelt's own, written for the oracle; it contains no code from transformers.
"""

__version__ = "0.0.0-smelt-stub"


class _Unavailable:
    """Any from_pretrained on these classes raises: transformers is not installed."""

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        raise OSError(f"transformers.{cls.__name__} is a smelt stand-in (transformers is not installed)")


class AutoConfig(_Unavailable):
    pass


class AutoTokenizer(_Unavailable):
    pass


class AutoModel(_Unavailable):
    pass
