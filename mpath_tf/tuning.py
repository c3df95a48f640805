"""``python -m mpath_tf.tuning RUN``: the KerasTuner chief or worker of a
distributed search (kept at this path for the README's commands and scripts
written for mpath-tf 0.1; the code lives in ``mpath_tf.pipeline.tuning``)."""

from mpath_tf.pipeline.tuning import main

if __name__ == "__main__":
    main()
