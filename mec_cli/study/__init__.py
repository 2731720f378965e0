"""`mec study`: the paper's whole studies (every training, evaluation and report an artefact needs) as one resumable
command, on this machine or a Slurm cluster, with seeds.

* :mod:`.spec`: what a study is: its runs (recipe plus overrides, per seed) and its reports; the built-in studies
  of the paper (``table1``, ``table2c``, ``lambda``, ``stages``, ``coco-lt``, and the ``demo``) and TOML files;
* :mod:`.manifest`: the study directory's one manifest (``study.json``): every run's settings, commands, status,
  timings and metrics file, written atomically under a lock;
* :mod:`.runner`: one stage (training or evaluation) of one run, in a process of its own, through the launch layer
  (:mod:`mec_cli.training`, :mod:`mec_cli.evaluation.checkpoint`); also what a Slurm array task runs;
* :mod:`.engine`: the plan (what is done, what resumes, what starts), the sequential backend and the status table;
* :mod:`.slurm`: the job arrays, their dependencies and the report job, as sbatch scripts;
* :mod:`.report`: ``DIR/report/``: the study's tables (mean and standard deviation over seeds) and figures, with an
  index.
"""
