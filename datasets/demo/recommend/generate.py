#!/usr/bin/env python3
"""好物商城 / GoodBuy demo recommendation data: items, customers, purchases with ratings and
customer-service consultations. Deterministic (standard library only, random.Random(7)).
Run from the repository root:  python3 datasets/demo/recommend/generate.py"""
import csv
import itertools
import json
import math
import os
import random
import re
from datetime import date, timedelta

R = random.Random(7)
OUT = os.path.dirname(os.path.abspath(__file__))
START = 1767225600                      # 2026-01-01 00:00:00 UTC
DAY, DAYS = 86400, 332                  # through 2026-11-28
END = START + DAYS * DAY - 1
N_CUSTOMERS, N_COLD = 400, 50           # N_COLD customers only ask questions, never buy; 60 use English

# --- items -------------------------------------------------------------------------------
COLOUR = {"黑色": "Black", "白色": "White", "蓝色": "Blue", "粉色": "Pink", "灰色": "Grey", "绿色": "Green", "红色": "Red",
          "紫色": "Purple", "银色": "Silver", "米白": "Cream", "雾蓝": "Misty blue", "墨绿": "Forest green", "卡其": "Khaki",
          "棕色": "Brown", "黄色": "Yellow", "橙色": "Orange", "酒红": "Burgundy", "深空灰": "Space grey",
          "原木色": "Natural wood", "驼色": "Camel", "藏青": "Navy", "奶白": "Off-white"}
ONE = [("", "", 0)]                     # no variants


def col(*names):                        # a colour axis: (zh, en, price delta)
    return [(n, COLOUR[n], 0) for n in names]


# (key, "top/sub", title, title_en, description, description_en, price, [axes], consumable)
T = [
    ("phone_lite", "electronics/phones", "好物青春版智能手机", "GoodBuy Lite smartphone", "6.5英寸大屏，5000mAh电池，日常够用的高性价比手机。", "A 6.5-inch everyday phone with a 5,000 mAh battery at a friendly price.", 899, [[("128GB", "128 GB", 0), ("256GB", "256 GB", 300)], col("黑色", "蓝色")], 0),
    ("phone_pro", "electronics/phones", "好物Pro智能手机", "GoodBuy Pro smartphone", "6.7英寸120Hz高刷屏，5000万像素主摄，支持65W快充。", "6.7-inch 120 Hz screen, 50 MP main camera and 65 W fast charging.", 1999, [[("256GB", "256 GB", 0), ("512GB", "512 GB", 400)], col("黑色", "银色")], 0),
    ("phone_senior", "electronics/phones", "大字体老人手机", "Big-button phone for seniors", "大字大声，一键SOS，待机可达15天。", "Large text, loud speaker, one-touch SOS and up to 15 days of standby.", 199, [col("红色", "黑色")], 0),
    ("case_lite", "electronics/phone-cases", "青春版液态硅胶手机壳", "Silicone case for GoodBuy Lite", "亲肤液态硅胶，内衬超细纤维，防摔防指纹。", "Soft-touch liquid silicone with a microfibre lining; drop- and fingerprint-resistant.", 39, [col("黑色", "蓝色", "粉色", "绿色")], 0),
    ("case_pro", "electronics/phone-cases", "Pro液态硅胶手机壳", "Silicone case for GoodBuy Pro", "亲肤液态硅胶，镜头加高保护，支持无线充电。", "Liquid silicone with a raised camera lip; works with wireless charging.", 49, [col("黑色", "银色", "雾蓝", "紫色")], 0),
    ("clear_lite", "electronics/phone-cases", "青春版透明防摔壳", "Clear bumper case for GoodBuy Lite", "四角气囊防摔，透明不发黄。", "Air-cushioned corners; clear and anti-yellowing.", 29, [ONE], 0),
    ("clear_pro", "electronics/phone-cases", "Pro透明防摔壳", "Clear bumper case for GoodBuy Pro", "四角气囊防摔，透明不发黄。", "Air-cushioned corners; clear and anti-yellowing.", 35, [ONE], 0),
    ("case_wallet", "electronics/phone-cases", "磁吸卡包", "Magnetic card wallet", "磁吸贴在手机背面，可放3张卡。", "Snaps onto the back of a magnetic case and holds three cards.", 59, [col("黑色", "棕色", "米白")], 0),
    ("film_lite", "electronics/screen-protectors", "青春版钢化膜（2片装）", "Tempered-glass screen protector for Lite (2-pack)", "9H硬度，附贴膜神器，新手也能一次贴好。", "9H glass with an alignment frame, so it goes on straight first time.", 19.9, [[("高清", "Clear", 0), ("防窥", "Privacy", 10)]], 1),
    ("film_pro", "electronics/screen-protectors", "Pro钢化膜（2片装）", "Tempered-glass screen protector for Pro (2-pack)", "9H硬度，曲面贴合，附贴膜神器。", "9H glass that follows the curved edge, with an alignment frame.", 24.9, [[("高清", "Clear", 0), ("防窥", "Privacy", 10)]], 1),
    ("charger20", "electronics/chargers", "20W USB-C快充头", "20 W USB-C fast charger", "小巧便携，支持PD快充，手机半小时充到50%。", "Pocket-sized PD charger: about 50% in 30 minutes.", 39, [col("白色", "黑色")], 0),
    ("gan65", "electronics/chargers", "65W氮化镓充电器", "65 W GaN charger", "两个C口一个A口，手机、平板、笔记本一个头搞定。", "Two USB-C and one USB-A port for phone, tablet and laptop.", 129, [col("白色", "黑色")], 0),
    ("wireless3", "electronics/chargers", "三合一无线充电座", "3-in-1 wireless charging stand", "手机、手表、耳机同时无线充，床头桌面都合适。", "Charges a phone, a watch and earbuds at once.", 199, [col("白色", "黑色")], 0),
    ("cable_c", "electronics/cables", "快充数据线", "USB-C fast-charging cable", "USB-C对C，支持60W快充和数据传输，编织线身耐弯折。", "USB-C to USB-C, 60 W charging and data, braided to survive bending.", 19.9, [[("1米", "1 m", 0), ("2米", "2 m", 10)], col("白色", "黑色")], 1),
    ("cable_l", "electronics/cables", "苹果Lightning数据线", "Lightning cable", "适用苹果手机，支持快充，接口加固。", "For iPhone, with fast charging and a reinforced connector.", 25, [[("1米", "1 m", 0), ("2米", "2 m", 10)]], 1),
    ("cable_3in1", "electronics/cables", "一拖三编织数据线", "Braided 3-in-1 cable", "Type-C、Lightning、Micro USB三头，一根线全家用。", "USB-C, Lightning and Micro-USB heads on one cable.", 39, [col("黑色", "红色")], 1),
    ("pb_mini", "electronics/power-banks", "迷你充电宝", "Mini power bank", "口红大小，自带插头，出门随手一揣。", "Lipstick-sized with a built-in connector.", 99, [[("5000mAh", "5,000 mAh", 0), ("10000mAh", "10,000 mAh", 30)], col("白色", "粉色", "蓝色")], 0),
    ("pb_mag", "electronics/power-banks", "磁吸无线充电宝", "Magnetic wireless power bank", "10000mAh，吸在手机背面边用边充。", "10,000 mAh that snaps onto the back of the phone.", 169, [col("白色", "紫色", "黑色")], 0),
    ("pb_big", "electronics/power-banks", "大容量快充充电宝", "High-capacity power bank", "支持65W快充，可以给笔记本充电，带电量显示。", "65 W output that can charge a laptop, with a charge display.", 149, [[("20000mAh", "20,000 mAh", 0), ("30000mAh", "30,000 mAh", 50)]], 0),
    ("stand_desk", "electronics/phone-holders", "桌面手机支架", "Desk phone stand", "铝合金折叠，角度高度可调，追剧网课都方便。", "Foldable aluminium stand with adjustable height and angle.", 29, [col("白色", "黑色", "粉色")], 0),
    ("mount_car", "electronics/phone-holders", "车载磁吸手机支架", "Magnetic car phone mount", "出风口安装，单手取放，行车稳固不抖。", "Clips to an air vent; one-handed, steady on bumpy roads.", 59, [ONE], 0),
    ("earbuds_anc", "electronics/earbuds", "降噪蓝牙耳机", "ANC earbuds", "主动降噪，单次续航7小时，支持双设备连接。", "Active noise cancelling, 7 hours per charge, two devices at once.", 299, [col("白色", "黑色")], 0),
    ("earbuds_sport", "electronics/earbuds", "运动挂耳式耳机", "Sports ear-hook earbuds", "挂耳设计跑步不掉，IPX5防汗。", "Ear hooks that stay put on a run; IPX5 sweat-proof.", 159, [col("黑色", "蓝色")], 0),
    ("earbuds_semi", "electronics/earbuds", "半入耳蓝牙耳机", "Semi-in-ear wireless earbuds", "轻盈半入耳，久戴不胀耳，通话清晰。", "Light semi-in-ear fit for all-day wear and clear calls.", 129, [col("白色", "粉色", "绿色")], 0),
    ("earbud_case", "electronics/earbuds", "耳机硅胶保护套", "Silicone earbud case cover", "卡通造型，防摔防刮，带挂钩。", "A cartoon-shaped cover with a clip, against drops and scratches.", 19.9, [[("小熊", "Bear", 0), ("柯基", "Corgi", 0), ("恐龙", "Dinosaur", 0)]], 0),
    ("headphones_anc", "electronics/headphones", "头戴式降噪耳机", "Over-ear ANC headphones", "40小时续航，可折叠收纳，通勤出差都好用。", "40-hour battery and a folding design for commutes and trips.", 499, [col("黑色", "银色", "雾蓝")], 0),
    ("headphones_kids", "electronics/headphones", "儿童头戴耳机", "Kids' headphones", "音量限制85分贝，保护孩子听力，上网课专用。", "Volume capped at 85 dB to protect young ears.", 99, [col("粉色", "蓝色", "黄色")], 0),
    ("speaker", "electronics/speakers", "便携蓝牙音箱", "Portable Bluetooth speaker", "IPX7防水，户外露营淋浴都能用，续航12小时。", "IPX7 waterproof for camping or the shower, 12-hour battery.", 169, [col("黑色", "蓝色", "绿色")], 0),
    ("speaker_retro", "electronics/speakers", "复古收音机音箱", "Retro radio speaker", "复古外观，支持FM收音和插卡播放。", "Vintage looks with FM radio and a memory-card slot.", 239, [col("原木色", "奶白")], 0),
    ("band", "electronics/smart-watches", "智能手环", "Smart band", "心率、睡眠、血氧监测，续航14天。", "Heart-rate, sleep and SpO2 tracking with a 14-day battery.", 199, [col("黑色", "粉色", "白色")], 0),
    ("watch", "electronics/smart-watches", "好物智能手表", "GoodBuy smartwatch", "AMOLED屏幕，支持蓝牙通话和100多种运动模式。", "AMOLED screen, Bluetooth calls and over 100 sports modes.", 699, [[("42mm", "42 mm", 0), ("46mm", "46 mm", 100)], col("黑色", "银色")], 0),
    ("watch_kids", "electronics/smart-watches", "儿童电话手表", "Kids' phone watch", "定位、视频通话、上课禁用，家长放心。", "Location, video calls and a school mode for peace of mind.", 399, [col("粉色", "蓝色")], 0),
    ("strap_silicone", "electronics/watch-bands", "智能手表硅胶表带", "Silicone strap for GoodBuy smartwatch", "快拆设计，运动出汗不闷。", "Quick-release and breathable during workouts.", 39, [col("黑色", "白色", "橙色", "绿色")], 0),
    ("strap_milanese", "electronics/watch-bands", "米兰尼斯表带", "Milanese loop strap", "磁吸扣，不锈钢编织，通勤更精致。", "Stainless-steel mesh with a magnetic clasp.", 79, [col("银色", "黑色")], 0),
    ("band_straps", "electronics/watch-bands", "手环替换腕带（3条装）", "Smart band replacement straps (3-pack)", "适用好物智能手环，三色搭配换着戴。", "Fits the GoodBuy smart band; three colours to swap.", 29, [ONE], 0),
    ("lamp_led", "electronics/lamps", "LED护眼台灯", "LED eye-care desk lamp", "无频闪无蓝光危害，五档色温，学习办公都护眼。", "Flicker-free with five colour temperatures for study and work.", 159, [col("白色", "黑色")], 0),
    ("lamp_fold", "electronics/lamps", "折叠充电台灯", "Foldable rechargeable desk lamp", "内置电池，宿舍断电也能用，折叠后能放进书包。", "Built-in battery for dorm power cuts; folds into a backpack.", 89, [col("白色", "绿色", "粉色")], 0),
    ("lamp_bar", "electronics/lamps", "显示器挂灯", "Monitor light bar", "挂在屏幕上方，照亮桌面不反光屏幕。", "Sits on top of the monitor and lights the desk without screen glare.", 199, [ONE], 0),
    ("mouse", "electronics/computer-accessories", "静音无线鼠标", "Silent wireless mouse", "静音按键，蓝牙加2.4G双模。", "Silent clicks, Bluetooth and 2.4 GHz dual mode.", 69, [col("黑色", "白色", "粉色")], 0),
    ("keyboard", "electronics/computer-accessories", "蓝牙矮轴键盘", "Low-profile Bluetooth keyboard", "可连三台设备一键切换，平板电脑通用。", "Switches between three devices; works with tablets and computers.", 199, [col("白色", "灰色")], 0),
    ("laptop_stand", "electronics/computer-accessories", "铝合金笔记本支架", "Aluminium laptop stand", "抬高屏幕缓解颈椎，六档可调。", "Raises the screen to ease your neck; six heights.", 99, [col("银色", "深空灰")], 0),
    ("desk_mat", "electronics/computer-accessories", "大号桌垫鼠标垫", "Large desk mat", "80×40cm，防水皮革面，桌面一秒变整洁。", "80 x 40 cm water-resistant leather surface.", 39, [col("灰色", "黑色", "墨绿")], 0),
    ("corgi", "toys/plush", "柯基毛绒抱枕", "Corgi plush pillow", "圆滚滚的柯基屁股，软糯回弹，抱着追剧正好。", "A round, squishy corgi to hug on the sofa.", 89, [[("35cm", "35 cm", 0), ("50cm", "50 cm", 40)]], 0),
    ("capybara", "toys/plush", "水豚毛绒公仔", "Capybara plush", "情绪稳定的水豚，送人自留都合适。", "An unbothered capybara, to keep or to give.", 69.9, [[("25cm", "25 cm", 0), ("40cm", "40 cm", 40), ("60cm", "60 cm", 100)]], 0),
    ("panda", "toys/plush", "熊猫毛绒玩具", "Panda plush", "憨态可掬的大熊猫，短毛绒面料不掉毛。", "A chubby giant panda in short, shed-free plush.", 99, [[("30cm", "30 cm", 0), ("45cm", "45 cm", 60)]], 0),
    ("bunny", "toys/plush", "小兔子安抚玩偶", "Bunny comforter doll", "A类婴幼儿标准，宝宝睡觉抱着更安心。", "Made to infant safety standards; a bedtime comfort for babies.", 59, [col("粉色", "白色", "灰色")], 0),
    ("dino", "toys/plush", "恐龙毛绒公仔", "Dinosaur plush", "呆萌小恐龙，小朋友的睡前伙伴。", "A goofy little dinosaur for bedtime.", 79, [col("绿色", "蓝色", "紫色"), [("30cm", "30 cm", 0), ("50cm", "50 cm", 50)]], 0),
    ("kitten", "toys/plush", "小猫咪毛绒挂件", "Kitten plush keychain", "挂书包挂钥匙都可爱。", "Cute on a schoolbag or a key ring.", 29, [[("橘猫", "Ginger", 0), ("奶牛猫", "Tuxedo", 0), ("三花", "Calico", 0)]], 0),
    ("shiba", "toys/plush", "柴犬毛绒公仔", "Shiba Inu plush", "招牌柴犬笑脸，治愈一整天。", "The classic Shiba smile to brighten the day.", 89, [[("30cm", "30 cm", 0), ("45cm", "45 cm", 50)]], 0),
    ("shark", "toys/plush", "鲨鱼毛绒抱枕", "Shark plush pillow", "长条大鲨鱼，当靠枕当抱枕都行。", "A long shark to lean on or hug.", 79, [[("60cm", "60 cm", 0), ("100cm", "100 cm", 70)]], 0),
    ("duck", "toys/plush", "小黄鸭毛绒公仔", "Yellow duck plush", "嫩黄小鸭，戴小帽子的那种。", "A little yellow duck in a tiny hat.", 49, [[("20cm", "20 cm", 0), ("35cm", "35 cm", 30)]], 0),
    ("blocks_city", "toys/building-blocks", "城市街景积木", "City street building set", "小颗粒拼装，拼好是一间可以摆桌上的小店。", "Small-brick set that builds a shop for your shelf.", 199, [[("咖啡店", "Café", 0), ("花店", "Flower shop", 0), ("书店", "Bookshop", 0)]], 0),
    ("blocks_big", "toys/building-blocks", "大颗粒积木桶（100粒）", "Big-brick bucket (100 pcs)", "大颗粒防吞咽，适合2岁以上宝宝。", "Large bricks too big to swallow, for ages 2 and up.", 129, [ONE], 0),
    ("blocks_space", "toys/building-blocks", "太空站拼装积木", "Space station building set", "1200颗粒，带灯光组件，大孩子和大人都爱拼。", "1,200 pieces with lights, for older kids and adults.", 299, [ONE], 0),
    ("blocks_flower", "toys/building-blocks", "迷你花束积木", "Mini flower bouquet bricks", "拼出来的花永不凋谢，送人很有心意。", "Flowers that never wilt; a thoughtful gift.", 69, [[("玫瑰", "Roses", 0), ("郁金香", "Tulips", 0), ("向日葵", "Sunflowers", 0)]], 0),
    ("puzzle_1000", "toys/puzzles", "1000片风景拼图", "1,000-piece landscape puzzle", "加厚纸板，切口顺滑，附海报参考图。", "Thick board with clean cuts and a reference poster.", 59, [[("雪山", "Snowy peaks", 0), ("海岛", "Island", 0), ("古镇", "Old town", 0)]], 0),
    ("puzzle_wood", "toys/puzzles", "儿童木质拼图", "Kids' wooden puzzle", "圆角大块木片，认知启蒙。", "Chunky round-edged wooden pieces for early learning.", 39, [[("动物", "Animals", 0), ("交通工具", "Vehicles", 0), ("字母", "Letters", 0)]], 0),
    ("bubble", "toys/kids-toys", "自动泡泡机", "Bubble machine", "一按出泡泡，户外遛娃神器。", "Press once for a stream of bubbles outdoors.", 59, [col("粉色", "蓝色")], 0),
    ("bubble_refill", "toys/kids-toys", "泡泡液补充装（1升）", "Bubble solution refill (1 L)", "无毒配方，泡泡大又多。", "Non-toxic mix for big, plentiful bubbles.", 19.9, [ONE], 1),
    ("magtiles", "toys/kids-toys", "磁力片（60片）", "Magnetic tiles (60 pcs)", "强磁拼搭，锻炼空间想象力。", "Strong magnets for building in 3D.", 169, [ONE], 0),
    ("lcd_pad", "toys/kids-toys", "儿童液晶画板", "Kids' LCD drawing tablet", "一键清除，无尘无墨，出门带着玩。", "One-button erase, no dust or ink; good for trips.", 49, [col("粉色", "蓝色")], 0),
    ("rc_car", "toys/kids-toys", "遥控越野小汽车", "Remote-control off-road car", "四驱越野，充电款，摔不坏。", "4WD, rechargeable and hard to break.", 129, [col("红色", "蓝色")], 0),
    ("giftbox", "gifts/gift-boxes", "精美礼品包装盒", "Gift box", "硬壳礼盒配丝带和拉菲草，送礼更体面。", "A rigid box with ribbon and paper shred.", 19.9, [[("小号", "Small", 0), ("中号", "Medium", 10), ("大号", "Large", 20)]], 1),
    ("birthday_set", "gifts/gift-boxes", "生日惊喜礼盒", "Birthday surprise gift set", "礼盒内含小夜灯、贺卡和香薰，开箱就是惊喜。", "A night light, a card and a scent in one surprise box.", 199, [[("女生款", "For her", 0), ("男生款", "For him", 0)]], 0),
    ("flower_box", "gifts/gift-boxes", "永生花礼盒", "Preserved flower gift box", "进口永生花，可保存三年。", "Preserved flowers that last about three years.", 259, [[("红玫瑰", "Red roses", 0), ("粉玫瑰", "Pink roses", 0)]], 0),
    ("card_hand", "gifts/greeting-cards", "手绘贺卡（5张装）", "Hand-drawn greeting cards (5-pack)", "插画师原创手绘，附信封。", "Original illustrations, envelopes included.", 19.9, [[("生日", "Birthday", 0), ("感谢", "Thank you", 0), ("节日", "Holiday", 0)]], 1),
    ("card_popup", "gifts/greeting-cards", "立体贺卡", "Pop-up greeting card", "打开是立体造型，留言空间大。", "Opens into a 3D scene with room to write.", 15, [[("蛋糕", "Cake", 0), ("爱心", "Heart", 0), ("樱花", "Cherry blossom", 0)]], 1),
    ("musicbox", "gifts/keepsakes", "木质八音盒", "Wooden music box", "手摇发条，实木雕刻。", "Hand-wound movement in carved wood.", 129, [[("天空之城", "Castle in the Sky", 0), ("生日快乐", "Happy Birthday", 0)]], 0),
    ("frame", "gifts/keepsakes", "定制刻字相框", "Custom engraved photo frame", "实木相框，可免费刻字。", "Solid wood, engraving included.", 89, [[("6寸", "6-inch", 0), ("8寸", "8-inch", 20)]], 0),
    ("projector", "gifts/keepsakes", "星空投影灯", "Starry sky projector lamp", "满屋星空，带定时和蓝牙音乐。", "Fills the room with stars; timer and Bluetooth music.", 149, [ONE], 0),
    ("candle", "gifts/candles", "香薰蜡烛", "Scented candle", "大豆蜡，燃烧约40小时。", "Soy wax, about 40 hours of burn time.", 69, [[("白茶", "White tea", 0), ("雪松", "Cedar", 0), ("无花果", "Fig", 0), ("柑橘", "Citrus", 0)]], 1),
    ("candle_set", "gifts/candles", "香薰蜡烛礼盒（3只装）", "Scented candle gift set (3 pcs)", "三种香型各一只，礼盒包装。", "Three scents in a gift box.", 159, [ONE], 0),
    ("reed", "gifts/candles", "无火香薰", "Reed diffuser", "藤条扩香，一瓶用两个月。", "Rattan reeds; one bottle lasts about two months.", 59, [[("白茶", "White tea", 0), ("雪松", "Cedar", 0), ("海盐", "Sea salt", 0)]], 1),
    ("storage_box", "home/storage", "可折叠收纳箱", "Foldable storage box", "不用时折叠压平，衣物玩具都能装。", "Folds flat when empty; for clothes or toys.", 39, [[("小号", "Small", 0), ("中号", "Medium", 10), ("大号", "Large", 20)]], 0),
    ("vacuum_bags", "home/storage", "真空压缩袋（5只装）", "Vacuum storage bags (5-pack)", "换季被子衣服压缩收纳，省一半空间。", "Halve the space of off-season duvets and clothes.", 49, [ONE], 1),
    ("pillow", "home/bedding", "记忆棉枕头", "Memory foam pillow", "慢回弹记忆棉，贴合颈椎。", "Slow-rebound foam that supports the neck.", 129, [[("标准款", "Standard", 0), ("加高款", "High", 20)]], 0),
    ("blanket", "home/bedding", "珊瑚绒毯子", "Fleece blanket", "亲肤不掉毛，午睡沙发盖都合适。", "Soft and shed-free for naps on the sofa.", 79, [col("灰色", "米白", "雾蓝")], 0),
    ("nap_pillow", "home/bedding", "卡通午睡枕", "Cartoon nap pillow", "趴睡不压手，办公室午休用。", "Rest on your desk without numb arms.", 49, [[("猫咪", "Cat", 0), ("小熊", "Bear", 0)]], 0),
    ("vase", "home/decor", "北欧陶瓷花瓶", "Nordic ceramic vase", "哑光釉面，插干花鲜花都好看。", "Matte glaze for dried or fresh flowers.", 59, [col("白色", "雾蓝")], 0),
    ("fairy", "home/decor", "星星串灯（3米）", "Star fairy lights (3 m)", "USB供电，卧室阳台氛围感拉满。", "USB-powered mood lighting for a bedroom or balcony.", 29, [[("暖白", "Warm white", 0), ("彩色", "Multicolour", 0)]], 0),
    ("humidifier", "home/appliances", "桌面加湿器", "Desk humidifier", "静音喷雾，USB供电，空调房必备。", "Quiet mist over USB for air-conditioned rooms.", 89, [col("白色", "粉色", "绿色")], 0),
    ("aroma", "home/appliances", "香薰机", "Aroma diffuser", "超声波雾化，可加精油，带七彩灯。", "Ultrasonic diffuser for essential oils, with colour lights.", 129, [col("原木色", "白色")], 0),
    ("fan", "home/appliances", "USB桌面小风扇", "USB desk fan", "三档风速，可充电，办公室宿舍都能用。", "Three speeds, rechargeable, for office or dorm.", 49, [col("白色", "粉色", "绿色")], 0),
    ("mop", "home/cleaning", "平板懒人拖把", "Flat mop", "免手洗挤水，360度旋转。", "Hands-free wringing and a 360-degree head.", 69, [ONE], 0),
    ("mop_pads", "home/cleaning", "拖把替换布（4片装）", "Mop refill pads (4-pack)", "超细纤维，吸水不留痕。", "Microfibre that soaks up water without streaks.", 19.9, [ONE], 1),
    ("pan", "kitchen/cookware", "不粘煎锅", "Non-stick frying pan", "少油不粘，燃气电磁炉通用。", "Cooks with little oil; gas and induction.", 99, [[("24cm", "24 cm", 0), ("28cm", "28 cm", 30)]], 0),
    ("castiron", "kitchen/cookware", "珐琅铸铁锅", "Enamel cast-iron pot", "锁水锁温，炖汤焖饭都好吃。", "Keeps heat and moisture in for stews and rice.", 299, [col("红色", "奶白", "墨绿")], 0),
    ("slicer", "kitchen/kitchen-gadgets", "多功能切菜器", "Multi-blade vegetable slicer", "切丝切片擦丝一器多用。", "Slices, juliennes and grates.", 59, [ONE], 0),
    ("utensils", "kitchen/kitchen-gadgets", "硅胶厨具五件套", "Silicone utensil set (5 pcs)", "耐高温不伤锅，带收纳桶。", "Heat-resistant and pan-safe, with a holder.", 69, [col("灰色", "绿色")], 0),
    ("scale", "kitchen/kitchen-gadgets", "电子厨房秤", "Digital kitchen scale", "精确到0.1克，烘焙必备。", "Accurate to 0.1 g for baking.", 39, [col("白色", "黑色")], 0),
    ("peeler", "kitchen/kitchen-gadgets", "不锈钢削皮刀", "Stainless-steel peeler", "锋利省力，带挖芽头。", "Sharp and easy, with a potato-eye scoop.", 12.9, [ONE], 1),
    ("bottle", "kitchen/drinkware", "不锈钢保温杯", "Insulated steel bottle", "316不锈钢，保温12小时。", "316 stainless steel, keeps hot for 12 hours.", 89, [[("350ml", "350 ml", 0), ("500ml", "500 ml", 20)], col("白色", "黑色", "粉色")], 0),
    ("mug", "kitchen/drinkware", "陶瓷马克杯", "Ceramic mug", "手绘釉下彩，可进微波炉。", "Hand-painted underglaze; microwave-safe.", 39, [[("猫咪", "Cat", 0), ("柯基", "Corgi", 0), ("熊猫", "Panda", 0), ("素色", "Plain", 0)]], 0),
    ("tumbler", "kitchen/drinkware", "玻璃吸管杯", "Glass tumbler with straw", "高硼硅玻璃，冷热都能装。", "Borosilicate glass for hot or cold drinks.", 49, [[("透明", "Clear", 0), ("粉色", "Pink", 0)]], 0),
    ("dripper", "kitchen/drinkware", "手冲咖啡滤杯", "Pour-over coffee dripper", "陶瓷滤杯，在家做手冲。", "Ceramic dripper for pour-over at home.", 59, [ONE], 0),
    ("filters", "kitchen/drinkware", "咖啡滤纸（100张）", "Coffee filter papers (100)", "原木浆无漂白。", "Unbleached wood pulp.", 15.9, [ONE], 1),
    ("bento", "kitchen/lunch-boxes", "分格便当盒", "Bento box", "三格分装，可微波加热。", "Three compartments, microwave-safe.", 59, [col("绿色", "粉色", "蓝色")], 0),
    ("lunch_jar", "kitchen/lunch-boxes", "保温饭盒", "Insulated lunch jar", "上班带饭中午还是热的。", "Lunch is still hot at noon.", 99, [col("白色", "黑色")], 0),
    ("kettle", "kitchen/small-appliances", "电热水壶（1.5升）", "Electric kettle (1.5 L)", "304不锈钢内胆，五分钟烧开。", "304 steel interior, boils in five minutes.", 99, [col("白色", "黑色")], 0),
    ("blender", "kitchen/small-appliances", "便携榨汁杯", "Portable blender", "无线充电，随时来杯果汁。", "Cordless and rechargeable for juice anywhere.", 129, [col("白色", "粉色", "绿色")], 0),
    ("ricecooker", "kitchen/small-appliances", "迷你电饭煲（1.6升）", "Mini rice cooker (1.6 L)", "一到两人份，预约定时。", "For one or two, with a delay timer.", 199, [col("白色", "粉色")], 0),
    ("notebook_dot", "stationery/notebooks", "A5点阵笔记本", "A5 dotted notebook", "100g加厚纸不洇墨，平摊设计。", "100 gsm paper that resists bleed-through; lies flat.", 19.9, [col("黑色", "米白", "墨绿", "酒红")], 1),
    ("journal", "stationery/notebooks", "精装手账本", "Hardcover journal", "烫金封面，附赠贴纸。", "Foil-stamped cover, stickers included.", 49, [[("樱花", "Sakura", 0), ("星空", "Starry sky", 0), ("复古", "Vintage", 0)]], 0),
    ("gelpens", "stationery/pens", "中性笔（12支装）", "Gel pens (12-pack)", "0.5mm子弹头，速干顺滑。", "0.5 mm bullet tip, smooth and quick-drying.", 19.9, [col("黑色", "蓝色", "红色")], 1),
    ("fountain", "stationery/pens", "钢笔", "Fountain pen", "EF尖，练字送人都合适。", "Extra-fine nib for handwriting practice or as a gift.", 89, [col("黑色", "酒红")], 0),
    ("ink", "stationery/pens", "钢笔墨囊（20支）", "Ink cartridges (20)", "通用口径，适配本店钢笔。", "Standard size that fits our fountain pens.", 15, [[("黑色", "Black", 0), ("蓝黑", "Blue-black", 0)]], 1),
    ("highlighter", "stationery/pens", "荧光笔（6色）", "Highlighters (6 colours)", "柔和色不刺眼，双头设计。", "Soft tones with twin tips.", 16.9, [ONE], 1),
    ("colourpens", "stationery/pens", "按动彩色笔（10色）", "Retractable colour pens (10)", "做笔记画手账，颜色丰富。", "Ten colours for notes and journals.", 29, [ONE], 0),
    ("planner", "stationery/planners", "2027年日程本", "2027 planner", "年月周日计划页齐全。", "Year, month, week and day pages.", 39, [[("A5", "A5", 0), ("A6", "A6", -10)]], 0),
    ("sticky", "stationery/sticky-notes", "便利贴（8本装）", "Sticky notes (8 pads)", "反复粘贴不留痕。", "Re-stick without residue.", 12.9, [[("彩色", "Bright", 0), ("马卡龙", "Pastel", 0)]], 1),
    ("washi", "stationery/sticky-notes", "和纸胶带（5卷）", "Washi tape (5 rolls)", "手撕不留胶，手账装饰。", "Tears by hand, no residue; for journals.", 12.9, [[("森林", "Forest", 0), ("海洋", "Ocean", 0), ("花园", "Garden", 0)]], 1),
    ("penholder", "stationery/desk-organisers", "桌面笔筒", "Desktop pen holder", "多格设计，笔和小物分开放。", "Several slots for pens and odds and ends.", 29, [col("白色", "原木色")], 0),
    ("desk_drawer", "stationery/desk-organisers", "桌面抽屉收纳盒", "Desktop drawer organiser", "小抽屉放文具数据线。", "Small drawers for stationery and cables.", 59, [col("白色", "粉色")], 0),
    ("pencilcase", "stationery/pencil-cases", "大容量笔袋", "Large pencil case", "多层分区，能装40支笔。", "Several sections that hold about 40 pens.", 29, [col("黑色", "灰色", "粉色", "蓝色")], 0),
    ("buckethat", "apparel/hats", "渔夫帽", "Bucket hat", "防晒遮阳，可折叠。", "Sun protection that folds away.", 59, [col("黑色", "米白", "卡其")], 0),
    ("beanie", "apparel/hats", "针织毛线帽", "Knit beanie", "加厚保暖不扎头。", "Thick, warm and not itchy.", 49, [col("黑色", "灰色", "红色")], 0),
    ("scarf", "apparel/scarves", "羊绒混纺围巾", "Cashmere-blend scarf", "柔软亲肤，冬天送人很体面。", "Soft and warm; a smart winter gift.", 199, [col("驼色", "灰色", "酒红")], 0),
    ("socks", "apparel/socks", "纯棉中筒袜（5双装）", "Cotton crew socks (5 pairs)", "吸汗透气不掉跟。", "Breathable, and they stay up.", 39, [[("男款", "Men's", 0), ("女款", "Women's", 0)]], 1),
    ("umbrella", "apparel/umbrellas", "晴雨两用折叠伞", "Compact sun & rain umbrella", "黑胶防晒，轻巧能放包里。", "UV-blocking coating, light enough for a bag.", 69, [col("黑色", "蓝色", "粉色")], 0),
    ("autoumbrella", "apparel/umbrellas", "全自动折叠伞", "Auto open-close umbrella", "一键开收，十骨抗风。", "One-button open and close; ten wind-resistant ribs.", 89, [col("黑色", "藏青")], 0),
    ("tote", "apparel/bags", "帆布托特包", "Canvas tote bag", "大容量，通勤买菜都能装。", "Roomy for the commute or the market.", 49, [col("米白", "黑色")], 0),
    ("backpack", "apparel/bags", "双肩电脑包", "Laptop backpack", "可放15.6寸电脑，带USB充电口。", "Fits a 15.6-inch laptop, with a USB charging port.", 199, [col("黑色", "灰色")], 0),
    ("crossbody", "apparel/bags", "斜挎小包", "Crossbody bag", "轻便小巧，手机钥匙都能放。", "Small and light for a phone and keys.", 129, [col("黑色", "棕色")], 0),
    ("gloves", "apparel/gloves", "触屏保暖手套", "Touchscreen gloves", "戴着手套也能刷手机。", "Use your phone without taking them off.", 39, [col("黑色", "灰色")], 0),
]

def with_variant(title, v, opening, closing, sep):  # 钢化膜（2片装） + 高清 -> 钢化膜（2片装，高清）
    return title if not v else title[:-1] + sep + v + closing if title.endswith(closing) else title + opening + v + closing


items, by_tpl, by_sub = [], {}, {}
for key, cat, zh, en, dzh, den, price, axes, cons in T:
    for combo in itertools.product(*axes):
        vz = " ".join(v[0] for v in combo if v[0])
        ve = ", ".join(v[1] for v in combo if v[1])
        it = {"id": "p%04d" % (len(items) + 1), "title": with_variant(zh, vz, "（", "）", "，"),
              "title_en": with_variant(en, ve, " (", ")", ", "), "description": dzh,
              "description_en": den, "categories": cat.split("/"),
              "price": round(float(price + sum(v[2] for v in combo)), 1), "active": True}
        # hidden simulation attributes (not written): template, popularity, quality, dates
        it["_tpl"], it["_sub"], it["_cons"], it["_short"] = key, cat.split("/")[1], cons, (zh, en)
        it["_tokens"] = {v[0] for v in combo if v[0]}
        it["_pop"] = R.lognormvariate(0, 1.3) * (1.6 if combo == tuple(a[0] for a in axes) else 1.0)
        it["_q"] = R.uniform(3.1, 4.7)
        it["_from"], it["_to"] = START, END + 1
        by_tpl.setdefault(key, []).append(it)
        by_sub.setdefault(it["_sub"], []).append(it)
        items.append(it)

# ~5% discontinued during the year (never sold after that), ~7% launched mid-year
picked = R.sample(items, 15 + 21)
for it in picked[:15]:      # the discontinued ones sold well enough that filtering them out matters
    it["active"], it["_to"], it["_pop"] = False, START + R.randint(45, 270) * DAY, it["_pop"] * 1.5
for it in picked[15:]:
    it["_from"] = START + R.randint(60, 260) * DAY

# --- tastes: (weight among customers, {sub-category: weight}); co-purchase rules ---------------
TASTES = {
    "phone": (1.3, {"phones": 3, "phone-cases": 3, "screen-protectors": 2, "chargers": 2, "cables": 2, "phone-holders": 1.5, "power-banks": 1}),
    "audio": (1.0, {"earbuds": 4, "headphones": 2, "speakers": 2, "smart-watches": 2.5, "watch-bands": 1, "chargers": 1}),
    "travel": (0.6, {"power-banks": 4, "cables": 2, "umbrellas": 2, "bags": 2, "drinkware": 1.5, "earbuds": 1}),
    "kids": (1.2, {"plush": 4, "building-blocks": 2.5, "puzzles": 1.5, "kids-toys": 3, "headphones": 0.5, "lunch-boxes": 0.5}),
    "gift": (1.0, {"gift-boxes": 3, "greeting-cards": 2, "keepsakes": 3, "candles": 2.5, "plush": 2, "scarves": 1, "drinkware": 1}),
    "kitchen": (1.0, {"cookware": 3, "kitchen-gadgets": 4, "drinkware": 2, "lunch-boxes": 2, "small-appliances": 3}),
    "home": (0.9, {"storage": 3, "bedding": 2.5, "decor": 2, "appliances": 3, "cleaning": 2.5, "candles": 1}),
    "stationery": (0.9, {"notebooks": 4, "pens": 4, "planners": 2, "sticky-notes": 3, "desk-organisers": 2, "pencil-cases": 2}),
    "desk": (0.8, {"lamps": 4, "computer-accessories": 4, "notebooks": 2, "desk-organisers": 2, "phone-holders": 1, "appliances": 1}),
    "fashion": (0.7, {"hats": 3, "scarves": 2.5, "socks": 2, "umbrellas": 2, "bags": 3, "gloves": 1.5}),
}
# source (template key or sub-category) -> [(target template key or sub-category, probability)]
RULES = {
    "phone_lite": [("case_lite", .45), ("clear_lite", .25), ("film_lite", .65), ("charger20", .3)],
    "phone_pro": [("case_pro", .45), ("clear_pro", .25), ("film_pro", .65), ("gan65", .35)],
    "phone_senior": [("charger20", .2)], "power-banks": [("cables", .55)], "chargers": [("cables", .35)],
    "watch": [("strap_silicone", .35), ("strap_milanese", .15)], "band": [("band_straps", .4)],
    "earbuds_anc": [("earbud_case", .25)], "earbuds_semi": [("earbud_case", .25)],
    "plush": [("gift-boxes", .3), ("greeting-cards", .3)], "blocks_flower": [("greeting-cards", .3)],
    "keepsakes": [("gift-boxes", .35), ("greeting-cards", .3)], "gift-boxes": [("greeting-cards", .3)],
    "lamps": [("notebooks", .4), ("pens", .2)], "laptop_stand": [("mouse", .3), ("desk_mat", .25)],
    "bubble": [("bubble_refill", .6)], "mop": [("mop_pads", .6)], "fountain": [("ink", .7)],
    "dripper": [("filters", .7)], "cookware": [("kitchen-gadgets", .25)], "aroma": [("reed", .15)],
    "notebook_dot": [("gelpens", .25)], "journal": [("washi", .4), ("colourpens", .3)],
}

# seasonality: Spring Festival gifting (early Feb), 618 (Jun 1-18), Double 11 (Nov 1-11)
DAY_W = [1 + (0.8 if d.month == 2 and d.day <= 16 else 0) + (1 if d.month == 6 and d.day <= 18 else 0)
         + (2.5 if d.month == 11 and d.day <= 11 else 0) for d in (date(2026, 1, 1) + timedelta(i) for i in range(DAYS))]
HOUR_W = [3, 2, 1, .5, .3, .3, .5, 1, 2, 3, 4, 4, 5, 6, 5, 4, 4, 4, 4, 3, 3, 3, 3, 3]  # UTC hours; China is UTC+8


def when(lo, hi):
    """A random shopping moment between days lo and hi (exclusive), seasonal and evening-heavy."""
    d = R.choices(range(lo, hi), weights=DAY_W[lo:hi])[0]
    return START + d * DAY + R.choices(range(24), weights=HOUR_W)[0] * 3600 + R.randrange(3600)


def fresh(it, bought):
    if it["id"] in bought:              # a repeat purchase: consumables only, and rarely
        return it["_cons"] and R.random() < 0.05
    return it["_cons"] or it["_tpl"] not in bought or R.random() < 0.15   # another colour/size: seldom


def pick(pool, t, bought, prefer=frozenset()):
    """A popularity-weighted item on sale at t; the same variant (colour…) as `prefer` is favoured."""
    pool = [it for it in pool if it["_from"] <= t < it["_to"] and fresh(it, bought)]
    w = [it["_pop"] * (3 if it["_tokens"] & prefer else 1) for it in pool]
    return R.choices(pool, weights=w)[0] if pool else None


def sub_of(taste):
    subs = TASTES[taste][1]
    return R.choices(list(subs), weights=list(subs.values()))[0]


# --- customers and purchases ---------------------------------------------------------------
customers, rows, bought_by = [], [], {}
EN, COLD = set(R.sample(range(1, N_CUSTOMERS + 1), 60)), set(R.sample(range(1, N_CUSTOMERS + 1), N_COLD))
for n in range(1, N_CUSTOMERS + 1):
    tastes, k = [], R.choices([1, 2, 3], weights=[45, 40, 15])[0]
    while len(tastes) < k:
        t = R.choices(list(TASTES), weights=[v[0] for v in TASTES.values()])[0]
        tastes += [t] if t not in tastes else []
    cust = {"id": "c%04d" % n, "locale": "en" if n in EN else "zh", "_tastes": tastes,
            "_tw": [R.uniform(0.5, 1.5) for _ in tastes], "_bias": R.gauss(0, 0.3), "_cold": n in COLD}
    customers.append(cust)
    mine, bought = bought_by.setdefault(cust["id"], []), set()
    if cust["_cold"]:
        continue
    lo = int(R.random() ** 2 * 230)
    hi = DAYS if R.random() < 0.8 else R.randint(lo + 40, DAYS)     # some customers drift away

    def buy(it, t, depth, intaste):
        r = it["_q"] + cust["_bias"] + (0.2 if intaste else -0.3) + R.gauss(0, 0.75)
        mine.append((t, it, max(1, min(5, round(r)))))
        bought.update((it["id"], it["_tpl"]))
        for target, p in RULES.get(it["_tpl"], []) + RULES.get(it["_sub"], []) if depth < 2 else []:
            t2 = t + (R.randint(20, 900) if R.random() < 0.65 else R.randint(3600, 10 * DAY))  # same order or later
            if R.random() < p and t2 <= END:
                nxt = pick([x for x in by_tpl.get(target) or by_sub[target] if x is not it], t2, bought, it["_tokens"])
                if nxt:
                    buy(nxt, t2, depth + 1, True)

    for _ in range(min(110, max(2, int(R.lognormvariate(math.log(22), 0.75))))):
        t, intaste = when(lo, hi), R.random() < 0.88                  # 12% outside the customer's tastes
        it = pick(by_sub[sub_of(R.choices(tastes, weights=cust["_tw"])[0])] if intaste else items, t, bought)
        if it:
            buy(it, t, 0, intaste)
    rows += [(t, cust["id"], it["id"], r) for t, it, r in mine]
rows.sort()

spend = {c["id"]: sum(it["price"] for _, it, _ in bought_by[c["id"]]) * R.lognormvariate(0, 0.5) for c in customers}
for i, c in enumerate(sorted(customers, key=lambda c: -spend[c["id"]])):   # ~6% diamond, 16% gold, 30% silver
    c["tier"] = "diamond" if i < 24 else "gold" if i < 88 else "silver" if i < 208 else "regular"
    c["_first"] = min(t for t, _, _ in bought_by[c["id"]]) if bought_by[c["id"]] else START + R.randint(20, 300) * DAY
    days = (c["_first"] - START) // DAY - (R.randint(1, 90) if c["_cold"] else R.randint(21, 400))
    c["signup"] = (date(2026, 1, 1) + timedelta(days)).isoformat()

# --- consultations --------------------------------------------------------------------------
# sub-category -> (Chinese questions, English questions); {t} is the product's short name
ASK = {
    "phones": (["{t}支持双卡双待吗", "{t}能插内存卡吗", "{t}怎么把旧手机的联系人导过来", "{t}支持NFC刷公交吗"], ["Is the {t} dual-SIM?", "Can I move my contacts from my old phone to the {t}?", "Does the {t} work with carriers outside China?"]), "phone-cases": (["{t}适合哪个型号", "{t}戴上还能无线充电吗", "{t}会不会发黄"], ["Which phone does the {t} fit?", "Can I still charge wirelessly with the {t} on?"]),
    "screen-protectors": (["{t}怎么贴才不起泡", "{t}贴歪了能补发一片吗", "{t}影响指纹解锁吗"], ["How do I put on the {t} without bubbles?", "Does the {t} affect the fingerprint sensor?"]), "chargers": (["{t}支持苹果快充吗", "{t}充电的时候发烫正常吗", "{t}能给笔记本充电吗"], ["Does the {t} fast-charge an iPhone?", "Is it normal for the {t} to get warm?"]),
    "cables": (["{t}能传数据吗", "{t}最高支持多少瓦", "{t}用了一个月接口松了"], ["Does the {t} transfer data too?", "How many watts does the {t} support?", "The {t} connector got loose after a month"]), "power-banks": (["充电宝可以带上飞机吗", "{t}充满要多久", "{t}能同时给两台手机充电吗", "{t}充不进电了怎么办"], ["Can I take the {t} on a plane?", "How long does the {t} take to charge fully?", "My {t} won't charge any more, what should I do?"]),
    "phone-holders": (["{t}适合多大的手机", "{t}开车会不会掉"], ["What phone sizes does the {t} hold?", "Will the {t} hold my phone on bumpy roads?"]), "earbuds": (["{t}怎么配对新手机", "{t}一只耳机没声音了", "{t}防水吗，跑步能戴吗"], ["How do I pair the {t} with a new phone?", "One side of my {t} has no sound", "Are the {t} waterproof?"]),
    "headphones": (["{t}能接电脑用吗", "{t}降噪怎么打开", "{t}戴久了夹头吗"], ["Can I use the {t} with a laptop?", "How do I turn on noise cancelling on the {t}?"]), "speakers": (["{t}能两个连在一起放吗", "{t}充一次电能用多久"], ["Can I pair two {t}s together?", "How long does the {t} battery last?"]),
    "smart-watches": (["{t}能连苹果手机吗", "{t}续航多久", "{t}微信消息能提醒吗", "{t}保修多久"], ["Does the {t} work with an iPhone?", "How long does the {t} battery last?", "What's the warranty on the {t}?"]), "watch-bands": (["{t}适合哪款手表", "{t}怎么拆装"], ["Which watch does the {t} fit?", "How do I swap the {t}?"]),
    "lamps": (["{t}有护眼认证吗", "{t}能调色温吗", "{t}灯一闪一闪的是坏了吗"], ["Is the {t} flicker-free?", "Can I change the colour temperature on the {t}?", "My {t} keeps flickering, is it faulty?"]), "computer-accessories": (["{t}能连平板吗", "{t}怎么切换设备", "{t}苹果电脑能用吗"], ["Does the {t} work with an iPad?", "Does the {t} work with a Mac?"]),
    "plush": (["{t}能机洗吗", "{t}适合几岁的小孩", "{t}有没有异味", "{t}实际有多大"], ["Can the {t} go in the washing machine?", "Is the {t} safe for a toddler?", "How big is the {t} really?"]), "building-blocks": (["{t}适合几岁", "{t}少了几个零件怎么办", "{t}拼好大概要多久"], ["What age is the {t} for?", "My {t} is missing a few pieces"]),
    "puzzles": (["{t}缺了一片能补吗", "{t}拼完尺寸多大"], ["A piece is missing from my {t}, can you send one?", "How big is the {t} when finished?"]), "kids-toys": (["{t}用什么电池", "{t}有3C认证吗", "{t}几岁的宝宝能玩"], ["What batteries does the {t} take?", "What age is the {t} suitable for?"]),
    "gift-boxes": (["{t}能帮忙写贺卡吗", "送朋友的{t}能不放价格单吗", "{t}能指定日期送到吗"], ["Can you add a card message with the {t}?", "Can the {t} ship without a price slip?", "Can the {t} arrive on a specific date?"]), "greeting-cards": (["{t}有信封吗", "{t}能帮我代写祝福吗"], ["Are envelopes included with the {t}?", "Can you write the message in the {t} for me?"]),
    "keepsakes": (["{t}可以刻字吗，刻字后还能退吗", "{t}刻字要多久发货"], ["Can the {t} be engraved, and can I still return it?", "How long does engraving the {t} take?"]), "candles": (["{t}能烧多久", "{t}味道浓不浓", "{t}有孕妇能用吗"], ["How long does the {t} burn?", "Is the {t} scent strong?"]),
    "storage": (["{t}承重多少", "{t}需要自己安装吗"], ["How much weight can the {t} hold?", "Does the {t} need assembling?"]), "bedding": (["{t}能机洗吗", "{t}会起球吗"], ["Can I machine-wash the {t}?", "Does the {t} pill?"]),
    "decor": (["{t}实物颜色和图片一样吗", "{t}收到碎了怎么办"], ["Is the {t} the same colour as the photos?", "My {t} arrived broken"]), "appliances": (["{t}噪音大吗", "{t}宿舍能用吗，多少瓦", "{t}保修多久"], ["Is the {t} noisy?", "What's the wattage of the {t}?", "What's the warranty on the {t}?"]),
    "cleaning": (["{t}多久换一次比较好", "{t}好用吗，瓷砖地板能用吗"], ["How often should I replace the {t}?", "Does the {t} work on tiles?"]), "cookware": (["{t}能用电磁炉吗", "{t}涂层掉了怎么办", "{t}第一次用要开锅吗"], ["Does the {t} work on induction?", "The coating on my {t} is peeling"]),
    "kitchen-gadgets": (["{t}能放洗碗机吗", "{t}刀片可以单独买吗"], ["Is the {t} dishwasher-safe?", "Can I buy spare parts for the {t}?"]), "drinkware": (["{t}能装开水吗", "{t}能装碳酸饮料吗", "{t}能进洗碗机吗"], ["Can I put boiling water in the {t}?", "Is the {t} dishwasher-safe?"]),
    "lunch-boxes": (["{t}能微波炉加热吗", "{t}会漏汤吗"], ["Can I microwave the {t}?", "Is the {t} leak-proof?"]), "small-appliances": (["{t}功率多大，宿舍能用吗", "{t}保修几年", "{t}第一次用有塑料味正常吗"], ["What's the wattage of the {t}?", "What's the warranty on the {t}?", "Does the {t} work on 110 V?"]),
    "notebooks": (["{t}纸张会洇墨吗", "{t}一本多少页"], ["Does ink bleed through the {t}?", "How many pages are in the {t}?"]), "pens": (["{t}有替换芯吗", "{t}写起来断墨怎么办"], ["Are there refills for the {t}?", "The ink in my {t} keeps skipping"]),
    "planners": (["{t}是从几月开始的", "{t}有周计划页吗"], ["Which month does the {t} start?", "Does the {t} have weekly pages?"]), "sticky-notes": (["{t}粘性强吗", "{t}一本多少张"], ["Will the {t} leave marks when removed?", "How many sheets come with the {t}?"]),
    "desk-organisers": (["{t}尺寸多大", "{t}放得下A4纸吗"], ["What are the dimensions of the {t}?", "Does A4 paper fit in the {t}?"]), "pencil-cases": (["{t}能装多少支笔", "{t}拉链质量怎么样"], ["How many pens fit in the {t}?", "The zip on my {t} broke"]),
    "hats": (["{t}头围多少，能调节吗", "{t}会褪色吗"], ["What head size does the {t} fit?", "Will the {t} fade in the wash?"]), "scarves": (["{t}是真羊毛的吗", "{t}能机洗吗"], ["What is the {t} made of?", "Can I machine-wash the {t}?"]),
    "socks": (["{t}一包几双", "{t}多大码"], ["How many pairs in the {t}?", "What sizes do the {t} come in?"]), "umbrellas": (["{t}防紫外线吗", "{t}抗风吗"], ["Does the {t} block UV?", "Is the {t} windproof?"]),
    "bags": (["{t}能装下14寸电脑吗", "{t}防水吗"], ["Does a 14-inch laptop fit in the {t}?", "Is the {t} waterproof?"]), "gloves": (["{t}真的能触屏吗", "{t}有几个尺码"], ["Do the {t} really work on touchscreens?", "What sizes do the {t} come in?"]),
    # template keys: products that their sub-category's questions don't fit
    "earbud_case": (["{t}适合哪款耳机", "{t}会不会很难拆"], ["Which earbuds does the {t} fit?", "Is the {t} hard to take off?"]), "desk_mat": (["{t}防水吗", "{t}有异味吗"], ["Is the {t} water-resistant?", "Does the {t} smell when new?"]),
    "laptop_stand": (["{t}能放16寸电脑吗", "{t}稳不稳，打字会晃吗"], ["Does a 16-inch laptop fit on the {t}?", "Does the {t} wobble when typing?"]), "magtiles": (["{t}磁力强吗，会不会掉磁片", "{t}适合几岁"], ["Do the {t} stay together well?", "What age are the {t} for?"]),
    "bubble_refill": (["{t}能兑水吗", "{t}适合哪款泡泡机"], ["Can I dilute the {t}?", "Which bubble machines does the {t} fit?"]), "projector": (["{t}能定时关吗", "{t}投在天花板上效果怎么样"], ["Does the {t} have a sleep timer?", "How does the {t} look on a ceiling?"]),
    "scale": (["{t}用什么电池", "{t}能称液体吗"], ["What batteries does the {t} use?", "Can the {t} measure liquids?"]), "dripper": (["{t}适合几人份", "{t}用几号滤纸"], ["How many cups does the {t} make?", "What filter size does the {t} take?"]),
    "filters": (["{t}适合哪种滤杯", "{t}有没有纸味"], ["Which drippers do the {t} fit?", "Do the {t} leave a paper taste?"]), "mug": (["{t}能进洗碗机吗", "{t}容量多大"], ["Is the {t} dishwasher-safe?", "How much does the {t} hold?"]),
    "bottle": (["{t}保温多久", "{t}能装碳酸饮料吗"], ["How long does the {t} keep drinks hot?", "Can I put fizzy drinks in the {t}?"]), "ink": (["{t}适合哪款钢笔", "{t}会不会堵笔"], ["Which pens do the {t} fit?", "Will the {t} clog my pen?"]),
}
AFTER = (["{t}什么时候发货", "我买的{t}三天了物流都没更新", "{t}不喜欢能七天无理由退吗", "{t}颜色发错了怎么换",
          "{t}能开发票吗", "收到的{t}有划痕怎么处理", "{t}坏了怎么保修", "{t}能换个颜色吗"],
         ["When will my {t} ship?", "No tracking update on my {t} order for days", "Can I return the {t} if I don't like it?",
          "I got the wrong colour {t}, how do I exchange it?", "Can I get an invoice for the {t}?",
          "The {t} arrived scratched, what can I do?", "My {t} stopped working, is that covered by the warranty?"])
BEFORE = (["{t}还有货吗", "{t}有优惠券吗", "{t}今天下单明天能到吗", "{t}双十一会降价吗"],
          ["Do you have the {t} in stock?", "Is there a coupon for the {t}?", "How long does shipping to the UK take for the {t}?"])
BROWSE = {
    "phone": (["有没有适合青春版的手机壳推荐", "手机和充电头一起买有优惠吗"], ["Which case do you recommend for the GoodBuy Lite?", "Is there a bundle deal on a phone and charger?"]),
    "audio": (["两三百块的降噪耳机哪款好", "有适合跑步戴的耳机吗"], ["Which earbuds are best for the gym?", "What's the difference between your ANC earbuds and headphones?"]),
    "travel": (["出差用的充电宝哪个合适，要能上飞机", "有轻一点的双肩包吗"], ["Which power bank is allowed on flights?", "Do you have a light backpack for travel?"]),
    "kids": (["三岁小孩玩什么玩具好", "有没有大一点的毛绒公仔", "六一儿童节有活动吗"], ["What toys do you have for a 3-year-old?", "Do you have bigger plush toys?"]),
    "gift": (["有什么适合送女朋友的生日礼物", "买礼物能帮忙包装吗", "送长辈什么礼物好"], ["Any gift ideas for my girlfriend's birthday?", "Do you offer gift wrapping?"]),
    "kitchen": (["一个人住买什么小家电实用", "有没有适合电磁炉的锅"], ["Which pans work on an induction hob?", "What small appliances do you recommend for a studio flat?"]),
    "home": (["宿舍用的加湿器哪个声音小", "有没有换季收纳的东西"], ["Which humidifier is the quietest?", "Do you have storage for winter clothes?"]),
    "stationery": (["考研用什么笔记本好", "手账胶带有新款吗"], ["Which notebook has the thickest paper?", "Do you have new washi tape designs?"]),
    "desk": (["学生用台灯哪款护眼", "居家办公有什么好物推荐"], ["Which desk lamp is best for reading?", "What do you recommend for a home office desk?"]),
    "fashion": (["冬天的围巾什么时候上新", "渔夫帽有没有别的颜色"], ["When do the winter scarves arrive?", "Do the bucket hats come in other colours?"]),
}
POLITE = (["", "", "", "亲，", "你好，", "请问", "在吗，"], ["", "", "", "Hi, ", "Hello, ", "Quick question: "])
KEEP_CASE = ("GoodBuy", "Lightning", "Nordic", "Shiba")


def ask(it):
    return ASK.get(it["_tpl"]) or ASK[it["_sub"]]


def say(c, tpls, it=None):
    en = c["locale"] == "en"
    text = R.choice([x for x in tpls[en] if it is None or it["_tokens"] & COLOUR.keys() or "颜色" not in x and "colour" not in x])
    if it is not None:
        name = re.sub(r"\s*[（(].*?[）)]", "", it["_short"][en])      # "the corgi plush pillow", not "the Corgi…"
        name = name[0].lower() + name[1:] if en and name[1].islower() and not name.startswith(KEEP_CASE) else name
        text = text.replace("{t}", name)
    hello = R.choice(POLITE[en])
    return hello + (text[0].lower() + text[1:] if hello and en and text[1].islower() else text)


cons = []
for c in customers:
    hist = bought_by[c["id"]]
    for _ in range(R.randint(1, 5) if c["_cold"] else min(len(hist), max(0, round(R.gauss(4.1, 2.2))))):
        if c["_cold"]:                      # only asks: browsing or about items in their tastes
            t, taste = when((c["_first"] - START) // DAY, DAYS), R.choice(c["_tastes"])
            sub = sub_of(taste)
            it = pick(by_sub[sub], t, set()) if R.random() < 0.55 else None
            text = say(c, ask(it) if R.random() < 0.7 else BEFORE, it) if it else say(c, BROWSE[taste])
        else:                               # before or after one of their purchases
            t0, it, _ = R.choice(hist)
            kind = R.random()
            if kind < 0.12:
                t, text = t0 - R.randint(3600, 20 * DAY), say(c, BROWSE[R.choice(c["_tastes"])])
            elif kind < 0.45:
                t, text = t0 - R.randint(300, 3 * DAY), say(c, ask(it) if R.random() < 0.75 else BEFORE, it)
            else:
                t, text = t0 + R.randint(7200, 20 * DAY), say(c, ask(it) if R.random() < 0.45 else AFTER, it)
        if START <= t <= END:
            cons.append((t, c["id"], text))
cons.sort()

# --- write ----------------------------------------------------------------------------------
with open(os.path.join(OUT, "items.jsonl"), "w", encoding="utf-8") as f:
    for it in items:
        f.write(json.dumps({k: v for k, v in it.items() if not k.startswith("_")}, ensure_ascii=False) + "\n")
with open(os.path.join(OUT, "interactions.csv"), "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["user_id", "item_id", "rating", "timestamp"])
    w.writerows([cid, iid, r, t] for t, cid, iid, r in rows)
with open(os.path.join(OUT, "customers.jsonl"), "w", encoding="utf-8") as f:
    for c in customers:
        f.write(json.dumps({"id": c["id"], "tier": c["tier"], "locale": c["locale"], "signup": c["signup"]}) + "\n")
with open(os.path.join(OUT, "consultations.jsonl"), "w", encoding="utf-8") as f:
    for t, cid, text in cons:
        f.write(json.dumps({"customer_id": cid, "text": text, "ts": t}, ensure_ascii=False) + "\n")
print("items %d (inactive %d), customers %d, interactions %d, consultations %d"
      % (len(items), sum(not it["active"] for it in items), len(customers), len(rows), len(cons)))
