package android.content.res;

import java.io.FileDescriptor;

/** Compile-time stand-in for Android's AssetFileDescriptor: the getters WordPieceBert.kt reads. */
public class AssetFileDescriptor {
    public FileDescriptor getFileDescriptor() {
        throw new UnsupportedOperationException("compile-time stand-in");
    }

    public long getStartOffset() {
        throw new UnsupportedOperationException("compile-time stand-in");
    }

    public long getDeclaredLength() {
        throw new UnsupportedOperationException("compile-time stand-in");
    }
}
