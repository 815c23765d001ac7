"""The web demo, `dust3r-jax ui`: `session` (the pipeline behind the page, no gradio) and `app`
(the gradio page). Importing this package imports neither; gradio is the optional extra "ui"."""
