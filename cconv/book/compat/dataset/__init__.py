"""The book's ``dataset`` package, made of cconv (see :mod:`cconv.book`): ``dataset.mnist``."""
