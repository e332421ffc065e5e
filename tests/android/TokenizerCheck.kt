// Runs the shipped WordPieceBert.kt tokenizer on a JVM and writes what it produces, for
// tests/test_android_tokenizer.py to compare with the Python WordPiece.
//
//   kotlin -cp check.jar TokenizerCheckKt MODEL VOCAB SEQ_LEN TEXTS OUT
//
// TEXTS: UTF-8, one text per '\n'. OUT: one tab-separated line per text, each field space-separated
// ids: encode(keepMask = true), encode(keepMask = false), WordPieceBert.inputIds,
// BertClassifier.inputIds, BertClassifier's length; then pretokenize's words, each as the hex of
// its UTF-8 bytes; then the JVM's Character.getType of each code point, comma-separated (its
// Unicode version may differ from Python's).

import com.example.mobilebert.BertClassifier
import com.example.mobilebert.WordPieceBert
import java.io.File
import java.io.RandomAccessFile
import java.nio.channels.FileChannel

fun main(args: Array<String>) {
    val (modelPath, vocabPath, seqLenArg, textsPath, outPath) = args
    val vocab = File(vocabPath).readLines(Charsets.UTF_8)
    val seqLen = seqLenArg.toInt()
    val channel = RandomAccessFile(modelPath, "r").channel
    val model = channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size())
    val bert = WordPieceBert(model, vocab, seqLen)
    val classifier = BertClassifier(model, vocab, listOf("negative", "positive"), seqLen)
    val texts = File(textsPath).readText(Charsets.UTF_8).split('\n')
    File(outPath).bufferedWriter(Charsets.UTF_8).use { out ->
        for (text in texts) {
            val (clsIds, clsLength) = classifier.inputIds(text)
            out.write(listOf(
                bert.tokenizer.encode(text).joinToString(" "),
                bert.tokenizer.encode(text, keepMask = false).joinToString(" "),
                bert.inputIds(text).joinToString(" "),
                clsIds.joinToString(" "),
                clsLength.toString(),
                bert.tokenizer.pretokenize(text).joinToString(" ") { word ->
                    word.toByteArray(Charsets.UTF_8).joinToString("") { "%02x".format(it) }
                },
                text.codePoints().toArray().joinToString(",") { Character.getType(it).toString() },
            ).joinToString("\t"))
            out.write("\n")
        }
    }
}
