"""The Routing-with-Generated-Data pipeline, one module per stage, each a plain function:

* :mod:`cascal.pipeline.generate`: a generator LLM writes questions from task descriptions;
* :mod:`cascal.pipeline.answer`: every pool model answers every question (cached, resumable);
* :mod:`cascal.pipeline.embed`: question embeddings, cached in the dataset folder;
* :mod:`cascal.pipeline.filter`: quality filters on the generated data;
* :mod:`cascal.pipeline.label`: a person answers the questions a router suggests (labels.csv);
* :mod:`cascal.pipeline.train`: fit a CASCAL router on a dataset folder and save it;
* :mod:`cascal.pipeline.route`: rank the pool for new questions, ask the top models, vote.

The ``cascal`` sub-commands are thin adapters over these functions. Stages are imported on
first use, so ``import cascal.pipeline`` does not import ``openai`` or scikit-learn.
"""
