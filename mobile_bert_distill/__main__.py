import sys

from mobile_bert_distill.cli import main

sys.exit(main())
