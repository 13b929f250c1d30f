"""The book's ``common/trainer.py``: :class:`cconv.Trainer`.

As the book's module, it also exports the optimizers (it star-imports
``common.optimizer``).
"""

from cconv.trainer import Trainer

from .optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

__all__ = ["SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop", "Trainer"]
