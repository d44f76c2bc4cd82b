"""The pipeline's stages, one module per stage (``pipeline.codedeps.STAGES`` names which runs each).

A stage is ``stage(params, dataset, ...) -> None``; ``pipeline.__main__`` wraps each as a CLI
sub-command. Paths come from ``pipeline.paths``; hyperparameters from the validated params. Each
stage reads its declared inputs and writes its declared outputs atomically.

This file imports nothing: it runs with every stage, so a stage's import closure (what the
workflows declare as its code) stays the modules it uses.
"""
