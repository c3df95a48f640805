"""What a finished search shows: the HTML report and the deployable bundle
with its selector (``results.json`` and the plots are the pipeline's:
``mpath_tf.pipeline.results``, ``mpath_tf.pipeline.plotting``)."""
