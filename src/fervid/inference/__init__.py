"""Inference: one torch path for logits (TTA included), ONNX Runtime, face detection and
cropping, the :class:`~fervid.inference.recognizer.EmotionRecognizer`, video streams, AdaBN.

Nothing is imported eagerly (torch and OpenCV load on first use).
"""
