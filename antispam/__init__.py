"""antispam: a Chinese text anti-spam service.

Importing this package is cheap on purpose: nothing here loads jieba, word vectors or TensorFlow.
Heavy work happens only when a command or backend asks for it.
"""

__version__ = "0.1.0"
