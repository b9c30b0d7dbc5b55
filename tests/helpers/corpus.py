"""Tiny corpora in the public layout (``msglog/msgspam.log.seg`` + ``msglog/msgpass.log.seg``)."""

from __future__ import annotations

from pathlib import Path

TINY_SPAM = [
    "尊敬 的 客户 ， 您 的 积分 可 兑换 现金 ， 详 询 xxxxxxxxxxx",
    "代开 发票 ， 联系 电话 xxxxxxxxxxx",
    "优惠 活动 开始 啦 ！ 全场 x 折 ， 加 微信 领取",
    "低息 贷款 ， 当天 放款 ， 详情 咨询 xxxxxxxxxxx",
    "新店 开业 ， 全场 五折 ， 欢迎 光临",
    "恭喜 您 中奖 了 ， 请 点击 链接 领取",
]
TINY_PASS = [
    "妈妈 ， 我们 明天 回家 吃 晚饭",
    "下午 3 点 开会 ， 记得 带 电脑",
    "今天 天气 不错 ， 一起 去 公园 吧",
    "我 已经 到 了 ， 你 在 哪里",
    "这 本书 很 好看 ， 推荐 给 你",
    "周末 一起 打 篮球 吗",
]


NUMBERS = ["一", "二", "三", "四", "五"]


def write_corpus(root: Path, spam: list[str], passed: list[str]) -> Path:
    folder = root / "msglog"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "msgspam.log.seg").write_text("\n".join(spam) + "\n", encoding="utf-8")
    (folder / "msgpass.log.seg").write_text("\n".join(passed) + "\n", encoding="utf-8")
    return root
