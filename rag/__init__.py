"""Multimodal retrieval-augmented generation: Visualized-BGE embeddings, Milvus storage, LlamaIndex retrieval."""

__version__ = "0.1.0"
