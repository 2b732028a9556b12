"""What every stage shares: the study config, the runner, files, locks, the prompt, categories, models.

    config      the study config's schema: one pydantic model per section, model names
    rules       the cross-field rules: settings no stage would read (an error), judge runs that measure nothing
    loading     config files (``extends:``, ``--set`` overrides) to a checked config; a study's data and report folders
    paths       the checkout, and config paths read relative to it
    runner      runs every stage notebook for every model with papermill, skipping what is up to date; status
    keys        what a stage's key holds (settings that change outputs, code, input hashes) and why one is stale
    imports     which helpers modules a notebook can run, and code hashed by its syntax tree without prose
    aside       trained folders of another key moved aside, never deleted by a rerun; clean --stale
    order       model names (base, scales, strategy-scale) and their order in every table and figure
    plots       colours, labels and PNG saving every stage's figures share; the training data's composition
    notebook    the one call each notebook's setup cell makes
    files       JSON / JSON lines, written to a temporary file and renamed into place
    lock        one batch run per study; kernels and training processes hold locks of their own
    prompt      BELLE's prompt template, the one definition training and generation share
    categories  the 12 use cases, their many spellings in real files, their display names
    records     reading instruction files: encodings, truncation, per-record problems
    cleaning    the content checks (self-reference, media, length, language) data and self-instruct share
    dedup       exact and MinHash near-duplicate removal, contamination n-grams
    models      the base model: the embedded GGUF converted once, loading for training and generation

Nothing here imports a stage; stages import from here.
"""
