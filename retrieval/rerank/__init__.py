"""Rerankers: the offline learned default, and a CrossEncoder adapter when a model is configured.

`cross_encoder` is not imported here, so using the default never loads torch.
"""

from retrieval.rerank.learned import LearnedReranker, LinearRankModel
from retrieval.rerank.protocol import Reranker

__all__ = ["LearnedReranker", "LinearRankModel", "Reranker"]
