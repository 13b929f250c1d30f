"""The book's ``common/optimizer.py``: :mod:`cconv.optim`, same classes, arguments and updates."""

from cconv.optim import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

__all__ = ["SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop"]
