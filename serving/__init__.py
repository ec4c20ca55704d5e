"""The TF Serving side: the model directory, warm-up requests, and the clients.

model_dir.py the <serving-dir>/<model>/<version>/ layout: complete versions, the production one
warmup.py    the warm-up requests written into each SavedModel's assets.extra/
client.py    REST and gRPC predict against a tensorflow_model_server, with its status API
predict.py   in-process prediction from a pushed model, the way TF Serving loads it, or with
             its TFLite model (the caller passes the app's decoder, trainer/tflite.py)

model_dir and warmup run inside TFX containers (Trainer, Evaluator, Pusher); the clients run
beside them. Nothing here imports the pipeline, the components or the CLI.
"""
