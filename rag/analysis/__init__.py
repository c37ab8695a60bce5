"""The studies users run on their own data: similarity report, zero-shot classification, embedding map,
retrieval evaluation."""

from .classify import DEFAULT_LOGIT_SCALE, DEFAULT_TEMPLATE, Prediction, classify, logit_scale
from .embedding_map import EmbeddedSet, embed_items, pca_2d, project, save_map, stored_vectors
from .evaluation import (
    MODES,
    EvalQuery,
    Mode,
    ModeResult,
    Ranker,
    evaluate,
    evaluate_collection,
    load_queries,
    missing_relevant,
    ranking_metrics,
    store_ranker,
)
from .similarity import Comparison, SimilarityReport, similarity_report

__all__ = [
    "DEFAULT_LOGIT_SCALE",
    "DEFAULT_TEMPLATE",
    "MODES",
    "Comparison",
    "EmbeddedSet",
    "EvalQuery",
    "Mode",
    "ModeResult",
    "Prediction",
    "Ranker",
    "SimilarityReport",
    "classify",
    "embed_items",
    "evaluate",
    "evaluate_collection",
    "load_queries",
    "missing_relevant",
    "logit_scale",
    "pca_2d",
    "project",
    "ranking_metrics",
    "save_map",
    "similarity_report",
    "store_ranker",
    "stored_vectors",
]
