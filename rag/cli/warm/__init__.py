"""The warm model process: ``rag search``, ``ask``, ``chat``, ``similarity`` and ``classify`` hand their work to a
background process that keeps the model loaded for ``RAG_KEEP_WARM`` idle seconds, as Ollama's ``keep_alive``.

- ``key``: which process a command may use (its model settings and the weight files' sizes and times);
- ``wire``: the frames a command and the process exchange over a Unix socket in the data folder;
- ``client``: what the ``rag`` command runs first: find, start or replace the process, then relay the command's
  output, input and exit status. It imports no heavy library (no torch, transformers, pymilvus, LlamaIndex);
- ``rag.cli.warm_host`` (beside this package, since the commands it runs import ``key``): the process itself,
  which runs the commands as ``rag`` would.

Its leases, liveness and idle stop are ``rag.background``'s, as for the shared Milvus Lite server.
"""
